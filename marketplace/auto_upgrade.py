"""Automatic upgrades of installs (docs/marketplace.md, "Automatic upgrades").

An owner or admin of the installing workspace turns *Upgrade automatically to new versions* on
for an install (and, when the workspace requires a passing evaluation first, chooses the suite).
`auto_upgrade_sweep` (the `marketplace.auto_upgrade` task: every minute, and after a version is
approved) moves each such install whose listing has a newer current version forward, one step
at a time, through `services.upgrade` acting as the person who turned it on (so permissions,
purchases and the upgrade itself are the ordinary ones):

- a paid version the workspace has no purchase for: held (`unpaid`), with the reason on the
  install's row and in the audit log, and checked again by every sweep, so the purchase lets
  it through;
- a person no longer owner or admin, or a version that cannot be evaluated or installed: held,
  with the reason on the install's row and in the audit log; turning automatic upgrades on
  again tries once more;
- the evaluation gate on: a trial copy of the new version is installed beside the old one and
  evaluated with the chosen suite; once the evaluation ends the copy is archived, and the
  install is upgraded if it passed or held (naming the evaluation) if it failed, or did not
  end within `GATE_TIMEOUT`;
- otherwise: upgraded.

Each step runs in one transaction holding the install's row lock and records the version it
handled (`auto_version`) and how far it got (`auto_state`), so a sweep that runs twice or
overlaps another never upgrades or evaluates twice for one version, and a sweep killed mid-way
leaves the install as it was before the step. The trial copy is archived on every way out
(turned off, the person demoted, upgraded or uninstalled by hand, the gate switched off, a newer
version), by `services.install_trial_discard`, which needs nobody's role. `services.upgrade` is
told the version this step checked: a newer one approved meanwhile is refused (Conflict), and
the next sweep starts over for it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import Agent
from core.exceptions import ApplicationError, Conflict, NotFound, ValidationFailed
from core.queue import enqueue
from evals.models import Evaluation, Suite
from evals.selectors import gate_policy
from evals.services import evaluation_start
from marketplace import pricing, services, snapshot
from marketplace.models import Install, Listing, ListingVersion
from marketplace.services import AUTO_UPGRADE_TASK
from notifications.kinds import Kind
from notifications.services import Event, notify_later
from tenants import audit
from tenants.models import Membership, Role
from tenants.permissions import Access, Perm

logger = logging.getLogger(__name__)

EVALUATING, UPGRADED, HELD = "evaluating", "upgraded", "held"
# Held until the workspace buys the version: every sweep checks again (no new audit or notice).
UNPAID = "unpaid"
# The listing's current version changed during the step: the next sweep starts over for it.
MOVED = "moved"
# An evaluation the gate waits for longer than this is given up: the install is held.
GATE_TIMEOUT = timedelta(hours=6)
_FIELDS = ["auto_version", "auto_state", "auto_evaluation_id", "auto_trial", "auto_note"]


def auto_upgrade_enqueue() -> None:
    """Send the sweep (after commit; a lost message is made up by the next minute's)."""
    transaction.on_commit(lambda: enqueue(AUTO_UPGRADE_TASK), robust=True)


@transaction.atomic
def auto_upgrade_set(
    *, access: Access, install: Install, enabled: bool, suite_id: int | None
) -> Install:
    """Turn automatic upgrades of an install on or off (owners and admins), with the suite a
    new version must pass when the workspace requires an evaluation before upgrading."""
    access.require(Perm.WORKSPACE_UPDATE)
    locked = (
        Install.objects.select_for_update()
        .filter(pk=install.pk, workspace=access.workspace, uninstalled_at__isnull=True)
        .first()
    )
    if locked is None:
        raise NotFound("No active install with that id in this workspace.")
    with schema_context(access.workspace.schema_name):
        if suite_id is not None and not Suite.objects.filter(pk=suite_id).exists():
            raise ValidationFailed(
                "Choose an evaluation suite of this workspace.",
                fields={"suite": ["No such suite."]},
            )
        gated = gate_policy().require_for_upgrade
    if enabled and gated and suite_id is None:
        raise ValidationFailed(
            "This workspace requires a passing evaluation before installs upgrade "
            "automatically: choose the suite new versions must pass.",
            fields={"suite": ["Required while the workspace requires an evaluation."]},
        )
    locked.auto_upgrade = enabled
    locked.auto_upgrade_by_id = access.actor_id if enabled else None
    locked.gate_suite_id = suite_id
    fields = ["auto_upgrade", "auto_upgrade_by", "gate_suite_id"]
    if not enabled or locked.auto_state in (HELD, UNPAID):
        # Off: stop an evaluation (its trial copy archived). On again: a held version is tried
        # once more. The note of a finished upgrade stays.
        services.install_trial_discard(locked)
        if locked.auto_state in (EVALUATING, HELD, UNPAID):
            locked.auto_state, locked.auto_evaluation_id, locked.auto_note = "", None, ""
        fields += _FIELDS
    locked.save(update_fields=fields)
    audit.record_for(
        access,
        action=audit.Action.LISTING_AUTO_UPGRADE_SET,
        target=locked,
        metadata={"enabled": enabled, "suite": suite_id},
    )
    if enabled:
        auto_upgrade_enqueue()
    return locked


def auto_upgrades_due() -> list[int]:
    """Installs with automatic upgrades on whose listing's current version is not theirs and
    not yet settled (upgraded or held) for that version; those held for want of a purchase
    are due every time (the purchase may have come)."""
    return list(
        Install.objects.filter(
            auto_upgrade=True,
            uninstalled_at__isnull=True,
            listing__current_version__isnull=False,
        )
        .exclude(version=F("listing__current_version"))
        .exclude(auto_version=F("listing__current_version"), auto_state__in=[UPGRADED, HELD])
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def auto_upgrade_sweep() -> int:
    """One step for every install due; returns how many were upgraded. One install's failure
    does not stop the rest."""
    upgraded = 0
    for install_id in auto_upgrades_due():
        try:
            upgraded += auto_upgrade_step(install_id=install_id) == UPGRADED
        except Exception:  # see docstring
            logger.exception("automatic upgrade of install %s failed", install_id)
    return upgraded


def _acting_access(install: Install) -> Access | None:
    """The person who turned automatic upgrades on, while still an active owner or admin."""
    if install.auto_upgrade_by_id is None:
        return None
    membership = (
        Membership.objects.select_related("user")
        .filter(
            user_id=install.auto_upgrade_by_id,
            workspace_id=install.workspace_id,
            role__in=[Role.OWNER, Role.ADMIN],
            user__is_active=True,
        )
        .first()
    )
    if membership is None:
        return None
    return Access(workspace=install.workspace, user=membership.user, role=membership.role)


def _hold(install: Install, new: ListingVersion, note: str, *, state: str = HELD) -> str:
    """Keep the install where it is (and archive its trial copy), say why on its row and in
    the audit log, and tell the installing workspace's owners and admins (once per install and
    version)."""
    services.install_trial_discard(install)
    install.auto_state = state
    install.auto_note = note[:600]
    install.save(update_fields=_FIELDS)
    audit.record(
        action=audit.Action.LISTING_AUTO_UPGRADE_HELD,
        workspace=install.workspace,
        target=install,
        metadata={"listing": install.listing.slug, "version": new.number, "reason": note},
    )
    workspace = install.workspace
    notify_later(
        recipients=lambda: Membership.objects.filter(
            workspace_id=workspace.pk, role__in=[Role.OWNER, Role.ADMIN], user__is_active=True
        ).values_list("user_id", flat=True),
        event=Event(
            kind=Kind.AUTO_UPGRADE_HELD,
            dedupe_key=f"auto-upgrade-held:{install.pk}:{new.pk}",
            title=f"“{install.listing.title}” was not upgraded to version {new.number}",
            body=note,
            url=reverse("marketplace_workspace", kwargs={"workspace_slug": workspace.slug}),
            workspace_id=workspace.pk,
        ),
    )
    return state


@transaction.atomic
def auto_upgrade_step(*, install_id: int) -> str:
    """Move one install one step towards its listing's current version; returns where it is:
    "off", "current", "evaluating", "upgraded", "held", "unpaid" (held until bought) or
    "moved" (a newer version was approved during the step: the next sweep starts over)."""
    install = (
        Install.objects.select_for_update(of=("self",))
        .select_related("listing", "version", "workspace")
        .filter(pk=install_id, auto_upgrade=True, uninstalled_at__isnull=True)
        .first()
    )
    if install is None:
        return "off"
    listing = install.listing
    new = listing.current_version
    if new is None or not listing.is_public or new.pk == install.version_id:
        if install.auto_trial:
            services.install_trial_discard(install)
            install.save(update_fields=_FIELDS)
        return "current"
    if install.auto_version_id != new.pk:  # a version not seen yet: start over for it
        services.install_trial_discard(install)
        install.auto_version = new
        install.auto_state, install.auto_evaluation_id, install.auto_note = "", None, ""
        install.auto_trial = {}
    elif install.auto_state in (UPGRADED, HELD):
        return install.auto_state
    stays = f"this install stays on version {install.version.number}"
    access = _acting_access(install)
    if access is None:
        return _hold(
            install,
            new,
            f"Version {new.number} was not installed automatically: the person who turned "
            f"automatic upgrades on is no longer an owner or admin here; {stays}. "
            "Turn automatic upgrades on again, or upgrade by hand.",
        )
    try:
        pricing.install_require_purchase(workspace_id=install.workspace_id, version=new)
    except pricing.PurchaseRequired as exc:
        if install.auto_state == UNPAID:  # still no purchase: said so already
            return UNPAID
        return _hold(
            install,
            new,
            f"Version {new.number} was not installed automatically: {exc.message}",
            state=UNPAID,
        )
    if install.auto_state == UNPAID:  # bought since: go on
        install.auto_state, install.auto_note = "", ""
    gated = False
    with schema_context(install.workspace.schema_name):
        if gate_policy().require_for_upgrade:
            gated = True
            waiting = _gate(access, install, new, stays)
            if waiting is not None:
                return waiting
    services.install_trial_discard(install)  # e.g. the gate switched off mid-evaluation
    try:
        services.upgrade(access=access, install=install, expected_version_id=new.pk)
    except Conflict as exc:
        if Listing.objects.filter(pk=listing.pk, current_version_id=new.pk).exists():
            return _hold(
                install, new, f"Version {new.number} could not be installed: {exc.message}"
            )
        install.save(update_fields=_FIELDS)
        return MOVED  # a newer version was approved meanwhile: never installed unchecked
    except ApplicationError as exc:
        return _hold(install, new, f"Version {new.number} could not be installed: {exc.message}")
    after = f" after evaluation #{install.auto_evaluation_id} passed" if gated else ""
    install.auto_state = UPGRADED
    install.auto_note = f"Upgraded automatically to version {new.number}{after}."
    install.save(update_fields=_FIELDS)
    return UPGRADED


def _gate(access: Access, install: Install, new: ListingVersion, stays: str) -> str | None:
    """In the installing schema: start the evaluation of a trial copy of `new`, or read how it
    ended. None when it passed (go on and upgrade); else the install's state."""
    if install.auto_state == "":
        if (
            install.gate_suite_id is None
            or not Suite.objects.filter(pk=install.gate_suite_id).exists()
        ):
            return _hold(
                install,
                new,
                f"Version {new.number} was not installed automatically: this workspace requires "
                f"a passing evaluation first and no suite is chosen for this install; {stays}.",
            )
        try:
            with transaction.atomic():  # the trial copy and its evaluation, or neither
                trial = _trial_create(access, install, new)
                target: dict[str, Any] = {f"{trial['kind']}_id": trial["id"]}
                started = evaluation_start(access=access, suite_id=install.gate_suite_id, **target)
        except ApplicationError as exc:
            return _hold(
                install,
                new,
                f"Version {new.number} could not be evaluated: {exc.message.rstrip('.')}; {stays}.",
            )
        install.auto_trial = trial
        install.auto_state = EVALUATING
        install.auto_evaluation_id = started.pk
        install.auto_note = (
            f"Evaluating version {new.number} (evaluation #{started.pk}) before upgrading."
        )
        install.save(update_fields=_FIELDS)
        return EVALUATING
    evaluation = Evaluation.objects.filter(pk=install.auto_evaluation_id or 0).first()
    if evaluation is not None and not evaluation.finished:
        if timezone.now() - evaluation.created_at < GATE_TIMEOUT:
            return EVALUATING
        hours = int(GATE_TIMEOUT.total_seconds() // 3600)
        return _hold(
            install,
            new,
            f"Evaluation #{evaluation.pk} of version {new.number} did not end within {hours} "
            f"hours; {stays}.",
        )
    services.install_trial_discard(install)
    if evaluation is None:
        return _hold(install, new, f"The evaluation of version {new.number} was deleted; {stays}.")
    if evaluation.status == Evaluation.Status.PASSED:
        install.save(update_fields=_FIELDS)
        return None
    return _hold(
        install,
        new,
        f"Version {new.number} failed evaluation #{evaluation.pk} (“{evaluation.suite.name}”: "
        f"{evaluation.cases_passed}/{evaluation.cases_done} cases passed); {stays}.",
    )


def _trial_create(access: Access, install: Install, new: ListingVersion) -> dict[str, object]:
    """A copy of `new` beside the installed one, to evaluate; its agents are listed so that
    they are archived with it. The installed copies still carry the old version's id."""
    kind, object_id = snapshot.install_snapshot(
        access,
        new.definition,
        install.listing.kind,
        new.pk,
        name=f"{install.listing.title} v{new.number} (evaluation)",
    )
    agents = list(
        Agent.objects.filter(listing_version_id=new.pk, archived_at__isnull=True)
        .exclude(pk=object_id if kind == Listing.Kind.AGENT else 0)
        .values_list("pk", flat=True)
    )
    return {"kind": kind, "id": object_id, "agents": agents}
