"""Writes for the marketplace: publishing, moderation, flags, installs and upgrades, run
statistics and reviews.

Listings live in the public schema; a snapshot is taken in the publisher's schema and an
installed copy is created in the installer's. Moderation is for staff (`user.is_staff`);
everything a workspace does goes through its `Access`. Statistics are numbers only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Avg, Count, F, Max
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django_tenants.utils import schema_context

from agents.models import Agent
from agents.services import agent_archive, agent_update
from core.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied, ValidationFailed
from core.queue import enqueue
from evals.selectors import latest_passed_score
from evals.services import publish_gate_check
from marketplace import pricing, snapshot
from marketplace.icons import ICON_ERROR, is_single_icon
from marketplace.models import (
    Category,
    CreatorAccount,
    FeeRule,
    Flag,
    Install,
    Listing,
    ListingVersion,
    Publisher,
    Purchase,
    Review,
    RunSample,
)
from marketplace.search_index import index_listing
from notifications.kinds import Kind
from notifications.services import Event, notify_on_commit
from tenants import audit
from tenants.models import Role, Workspace
from tenants.permissions import Access, Perm
from workflows import agent_refs
from workflows.models import Workflow, WorkflowVersion
from workflows.services import version_save, workflow_archive

AUTO_UPGRADE_TASK = "marketplace.auto_upgrade"
STATS_WINDOW = 1000
MAX_REASON = 2000

# A paid version's price, in cents of its currency (USD only for now).
MIN_PRICE_CENTS = 50  # Stripe's smallest charge: one-time and monthly prices
MIN_PER_RUN_PRICE_CENTS = 5  # per-run charges add up on the buyer's next invoice
MAX_PRICE_CENTS = 1_000_000
CURRENCIES = ("usd",)
PAYOUTS_FIRST = (
    "Set up payouts first: a paid version can be submitted once your payouts account is "
    "onboarded (Publish → Set up payouts). Or publish it for free."
)


def _unique_slug(model: Any, base: str, *, max_length: int) -> str:
    base = slugify(base)[:max_length].strip("-") or "listing"
    if not model.objects.filter(slug=base).exists():
        return base
    for number in range(2, 10_000):
        suffix = f"-{number}"
        candidate = base[: max_length - len(suffix)] + suffix
        if not model.objects.filter(slug=candidate).exists():
            return candidate
    raise Conflict("No free slug left for this name.")


def _require_staff(user: Any) -> None:
    if user is None or not getattr(user, "is_staff", False):
        raise PermissionDenied("Only platform staff may moderate the marketplace.")


def _reason(reason: str, field: str = "reason") -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("Give a reason.", fields={field: ["A reason is required."]})
    return reason[:MAX_REASON]


# --- publishing ------------------------------------------------------------------------------


def price_errors(pricing: str, price_cents: int, currency: str) -> dict[str, list[str]]:
    """What is wrong with a version's price, by field (`pricing`, `price_cents`, `currency`):
    free costs nothing; a paid price is $0.50 ($0.05 per run) to $10,000 in a supported
    currency."""
    if pricing not in Listing.Pricing.values:
        return {"pricing": [f"One of: {', '.join(Listing.Pricing.values)}."]}
    errors: dict[str, list[str]] = {}
    if pricing == Listing.Pricing.FREE:
        if price_cents:
            errors["price_cents"] = ["A free version has no price: leave the price empty."]
        return errors
    if currency not in CURRENCIES:
        errors["currency"] = [f"Prices are in {', '.join(c.upper() for c in CURRENCIES)}."]
    if pricing == Listing.Pricing.PER_RUN and price_cents < MIN_PER_RUN_PRICE_CENTS:
        errors["price_cents"] = [
            f"A price per run is at least ${MIN_PER_RUN_PRICE_CENTS / 100:.2f} (runs are "
            "added up on the buyer's next invoice)."
        ]
    elif pricing != Listing.Pricing.PER_RUN and price_cents < MIN_PRICE_CENTS:
        errors["price_cents"] = [
            f"The price is at least ${MIN_PRICE_CENTS / 100:.2f} (Stripe's minimum charge)."
        ]
    elif price_cents > MAX_PRICE_CENTS:
        errors["price_cents"] = [f"The price is at most ${MAX_PRICE_CENTS / 100:,.2f}."]
    return errors


def _check_price(publisher: Publisher, pricing: str, price_cents: int, currency: str) -> None:
    errors = price_errors(pricing, price_cents, currency)
    if errors:
        raise ValidationFailed("The price is not valid: " + ", ".join(errors) + ".", fields=errors)
    if pricing == Listing.Pricing.FREE:
        return
    account = CreatorAccount.objects.filter(publisher=publisher).first()
    if account is None or not account.onboarded:
        raise ValidationFailed(PAYOUTS_FIRST, fields={"pricing": [PAYOUTS_FIRST]})


@transaction.atomic
def publisher_get_or_create(*, access: Access) -> Publisher:
    access.require(Perm.BUILD)
    workspace = access.workspace
    publisher = Publisher.objects.filter(workspace=workspace).first()
    if publisher is not None:
        return publisher
    return Publisher.objects.create(
        workspace=workspace,
        slug=_unique_slug(Publisher, workspace.slug, max_length=60),
        display_name=workspace.name[:80],
    )


def _not_a_copy(listing_version_id: int | None, name: str) -> None:
    """An installed listing's copy is someone else's work (and, when paid, what they sell): it
    is never published again (the publish page offers no copies; this holds for the API)."""
    if listing_version_id is None:
        return
    listing = Listing.objects.filter(versions__pk=listing_version_id).only("title").first()
    origin = f"“{listing.title}” from the marketplace" if listing else "a marketplace listing"
    raise ValidationFailed(
        f"“{name}” is an installed copy of {origin}: it cannot be published. Publish an agent "
        "or workflow of your own.",
        fields={"source_id": ["An installed copy of a marketplace listing."]},
    )


def _take_snapshot(
    workspace: Workspace, kind: str, source_id: int
) -> tuple[dict[str, Any], list[str], list[str], list[str]]:
    """(definition, required tools, required providers, notes), read in `workspace`'s schema."""

    notes: list[str] = []
    with schema_context(workspace.schema_name):
        if kind == Listing.Kind.AGENT:
            agent = Agent.objects.filter(pk=source_id, archived_at__isnull=True).first()
            if agent is None:
                raise NotFound("No active agent with that id in this workspace.")
            _not_a_copy(agent.listing_version_id, agent.name)
            # The workspace may require a passing evaluation first (docs/evals.md).
            publish_gate_check(agent_id=agent.pk)
            definition = snapshot.agent_snapshot(agent, notes=notes)
        else:
            workflow = Workflow.objects.filter(pk=source_id, archived_at__isnull=True).first()
            if workflow is None:
                raise NotFound("No active workflow with that id in this workspace.")
            _not_a_copy(workflow.listing_version_id, workflow.name)
            publish_gate_check(workflow_id=workflow.pk)
            definition = snapshot.workflow_snapshot(workflow, notes=notes)
        providers = snapshot.providers_of(snapshot.models_named(kind, definition))
    return definition, snapshot.required_tools(kind, definition), providers, notes


def _listing_fields(
    title: str, summary: str, description: str, category_slug: str, tags: Any, icon: str
) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    title, summary = (title or "").strip(), " ".join((summary or "").split())
    if not title or len(title) > 100:
        errors["title"] = ["Give the listing a title of 1–100 characters."]
    if not summary or len(summary) > 200:
        errors["summary"] = ["Give a summary of 1–200 characters."]
    category = Category.objects.filter(slug=category_slug or "").first()
    if category is None:
        errors["category_slug"] = [f"No category “{category_slug}”."]
    tags = [str(t).strip().lower() for t in (tags or []) if str(t).strip()]
    if len(tags) > 10 or any(len(t) > 30 for t in tags):
        errors["tags"] = ["Use at most 10 tags of up to 30 characters."]
    icon = (icon or "").strip()
    if icon and not is_single_icon(icon):
        errors["icon"] = [ICON_ERROR]
    if errors:
        raise ValidationFailed(
            "The listing is not valid: " + ", ".join(errors) + ".", fields=errors
        )
    return {
        "title": title,
        "summary": summary,
        "description": (description or "").strip(),
        "category": category,
        "tags": list(dict.fromkeys(tags)),
        "icon": icon or "",
    }


def _kept_price(
    listing: Listing | None, pricing: str | None, price_cents: int | None, currency: str | None
) -> tuple[str, int, str]:
    """A new version's (pricing, price_cents, currency): what was given, the rest kept from the
    listing's current price (its approved current version's; before any approval, its newest
    submitted version's); free for a new listing. A price kept across a change of price model
    only between paid models (a paid version's price must be given again only when going from
    free to paid)."""
    kept: tuple[str, int, str] = (Listing.Pricing.FREE, 0, "usd")
    if listing is not None:
        if listing.current_version_id is not None:
            kept = (listing.pricing, listing.price_cents, listing.currency)
        else:
            latest = listing.versions.order_by("-number").first()
            if latest is not None:
                kept = (latest.pricing, latest.price_cents, latest.currency)
    new_pricing = pricing if pricing is not None else kept[0]
    if price_cents is None:
        paid_both = Listing.Pricing.FREE not in (new_pricing, kept[0])
        price_cents = kept[1] if paid_both else 0
    return new_pricing, price_cents, currency if currency is not None else kept[2]


@transaction.atomic
def listing_publish(
    *,
    access: Access,
    kind: str,
    source_id: int,
    title: str,
    summary: str,
    description: str = "",
    category_slug: str,
    tags: list[str] | None = None,
    icon: str = "",
    changelog: str = "",
    example_inputs: list[Any] | None = None,
    slug: str | None = None,
    pricing: str | None = None,
    price_cents: int | None = None,
    currency: str | None = None,
    show_evaluation_score: bool = False,
) -> ListingVersion:
    """Submit an agent or workflow of this workspace for review: a new listing the first time,
    then a new version (number + 1) of the listing. The version waits for moderation; the
    listing's text changes only while it has never been approved (afterwards it is public).
    The version carries its price (the listing takes it when the version is approved); a paid
    one only from a publisher whose payouts account is onboarded. A price part left out
    (None) keeps the listing's current one (`_kept_price`): a new version sent without a price
    does not make a paid listing free; only an explicit "free" does. A new listing without a
    price is free."""
    access.require(Perm.BUILD)
    if kind not in Listing.Kind.values:
        raise ValidationFailed(
            "Choose what to publish.", fields={"kind": [f"One of: {', '.join(Listing.Kind)}."]}
        )
    fields = _listing_fields(title, summary, description, category_slug, tags, icon)
    publisher = publisher_get_or_create(access=access)
    listing: Listing | None
    if slug:
        listing = Listing.objects.select_for_update().filter(slug=slug).first()
        if listing is None:
            raise NotFound(f"No listing “{slug}”.")
        if listing.publisher_id != publisher.pk:
            raise PermissionDenied("This listing belongs to another publisher.")
        if listing.kind != kind:
            raise ValidationFailed(
                f"This listing is a {listing.get_kind_display().lower()}.",
                fields={"kind": [f"Publish a {listing.kind} to this listing."]},
            )
    else:
        earlier = ListingVersion.objects.filter(
            listing__publisher=publisher, source_kind=kind, source_id=source_id
        ).values("listing_id")
        listing = Listing.objects.select_for_update().filter(pk__in=earlier).first()
    pricing, price_cents, currency = _kept_price(listing, pricing, price_cents, currency)
    _check_price(publisher, pricing, price_cents, currency)
    definition, tools, providers, notes = _take_snapshot(access.workspace, kind, source_id)
    score = None
    if show_evaluation_score:
        with schema_context(access.workspace.schema_name):
            score = (
                latest_passed_score(agent_id=source_id)
                if kind == Listing.Kind.AGENT
                else latest_passed_score(workflow_id=source_id)
            )
    if listing is None:
        listing = Listing.objects.create(
            publisher=publisher,
            kind=kind,
            slug=_unique_slug(Listing, fields["title"], max_length=80),
            **fields,
        )
    elif listing.published_at is None:
        for name, value in fields.items():
            setattr(listing, name, value)
        listing.save(update_fields=[*fields, "updated_at"])
    number = (listing.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = ListingVersion.objects.create(
        listing=listing,
        number=number,
        changelog=(changelog or "").strip(),
        definition=definition,
        required_tools=tools,
        required_providers=providers,
        example_inputs=list(example_inputs or []),
        submitted_by_id=access.actor_id,
        source_kind=kind,
        source_id=source_id,
        pricing=pricing,
        price_cents=price_cents,
        currency=currency,
        evaluation_score=score[0] if score else None,
        evaluation_cases=score[1] if score else None,
    )
    audit.record_for(
        access,
        action=audit.Action.LISTING_SUBMITTED,
        target=listing,
        metadata={
            "version": number,
            "notes": notes,
            "pricing": pricing,
            "price_cents": price_cents,
        },
    )
    return version


# --- platform fee (staff) --------------------------------------------------------------------


@transaction.atomic
def fee_rule_save(*, user: Any, rule: FeeRule) -> FeeRule:
    """Staff set the platform fee (the default, or a category's override); audited with the
    percent it replaces. New purchases copy the fee; bought ones keep theirs."""
    _require_staff(user)
    previous = (
        FeeRule.objects.select_for_update().filter(pk=rule.pk).values_list("percent", flat=True)
    ).first()
    rule.full_clean()
    rule.save()
    audit.record(
        action=audit.Action.FEE_RULE_CHANGED,
        actor=user,
        target=rule,
        metadata={
            "via": "admin",
            "category": rule.category.slug if rule.category else None,
            "percent": f"{rule.percent:.2f}",
            "previous": f"{previous:.2f}" if previous is not None else None,
        },
    )
    return rule


@transaction.atomic
def fee_rule_delete(*, user: Any, rule: FeeRule) -> None:
    """Staff remove a fee rule: its category falls back to the default."""
    _require_staff(user)
    audit.record(
        action=audit.Action.FEE_RULE_CHANGED,
        actor=user,
        target=rule,
        metadata={
            "via": "admin",
            "category": rule.category.slug if rule.category else None,
            "percent": None,
            "previous": f"{rule.percent:.2f}",
        },
    )
    rule.delete()


# --- moderation ------------------------------------------------------------------------------


def _locked_version(version: ListingVersion) -> ListingVersion:
    locked = ListingVersion.objects.select_for_update().select_related("listing").get(pk=version.pk)
    if locked.status != ListingVersion.Status.PENDING:
        raise Conflict(f"Version {locked.number} was already {locked.get_status_display()}.")
    return locked


def _decide(version: ListingVersion, user: Any, status: str, reason: str) -> ListingVersion:
    version.status = status
    version.moderation_reason = reason
    version.moderated_by = user
    version.moderated_at = timezone.now()
    version.save(update_fields=["status", "moderation_reason", "moderated_by", "moderated_at"])
    _moderation_notice(version)
    return version


_DECIDED: dict[str, str] = {
    ListingVersion.Status.APPROVED: "approved: it is listed",
    ListingVersion.Status.REJECTED: "rejected",
    ListingVersion.Status.CHANGES_REQUESTED: "sent back: staff request changes",
}


def _moderation_notice(version: ListingVersion) -> None:
    """Tell whoever submitted the version (after commit) what staff decided, and why."""
    listing = version.listing
    publisher_workspace = (
        Workspace.objects.filter(publisher__pk=listing.publisher_id).only("slug").first()
    )
    url = (
        reverse("marketplace_workspace", kwargs={"workspace_slug": publisher_workspace.slug})
        if publisher_workspace is not None and version.status != ListingVersion.Status.APPROVED
        else reverse("marketplace_listing", kwargs={"slug": listing.slug})
    )
    reason = f" Reason: {version.moderation_reason}" if version.moderation_reason else ""
    notify_on_commit(
        user_ids=[version.submitted_by_id],
        event=Event(
            kind=Kind.LISTING_MODERATED,
            dedupe_key=f"moderation:{version.pk}:{version.status}",
            title=f"“{listing.title}” version {version.number} was {_DECIDED[version.status]}",
            body=(
                f"Staff reviewed version {version.number} of your listing "
                f"“{listing.title}”.{reason}"
            ),
            url=url,
            workspace_id=publisher_workspace.pk if publisher_workspace is not None else None,
        ),
    )


def _payouts_missing(publisher: Publisher) -> str:
    """Why `publisher` cannot be paid, in words for staff ("" when its account is onboarded)."""
    account = CreatorAccount.objects.filter(publisher=publisher).first()
    if account is None:
        return "has not set up payouts"
    if account.onboarded:
        return ""
    if account.disabled_reason and not account.disabled_reason.startswith("requirements."):
        return f"has a payouts account Stripe restricted ({account.disabled_reason})"
    if account.requirements_due or not account.details_submitted:
        return "has not finished payouts setup: Stripe still needs details"
    return "has a payouts account Stripe has not enabled for transfers yet"


@transaction.atomic
def version_approve(*, user: Any, version: ListingVersion) -> ListingVersion:
    """Approve a pending version; it becomes the one installs get (if newer than the current).
    A paid version is approved only while its publisher's payouts account is onboarded: it
    could not be bought otherwise (Conflict naming the payouts status)."""
    _require_staff(user)
    locked = _locked_version(version)
    listing = Listing.objects.select_for_update().get(pk=locked.listing_id)
    if locked.pricing != Listing.Pricing.FREE:
        publisher = Publisher.objects.get(pk=listing.publisher_id)
        missing = _payouts_missing(publisher)
        if missing:
            raise Conflict(
                f"Version {locked.number} of “{listing.title}” is paid, but its publisher "
                f"{publisher.display_name} {missing}, so it could not be bought. It stays "
                "pending: approve it once their payouts are set up, or request changes (a free "
                "version needs no payouts)."
            )
    _decide(locked, user, ListingVersion.Status.APPROVED, "")
    current = listing.current_version
    if current is None or current.number < locked.number:
        listing.current_version = locked
        listing.providers = list(locked.required_providers)
        # New purchases pay the current version's price (purchases copy the version's).
        listing.pricing = locked.pricing
        listing.price_cents = locked.price_cents
        listing.currency = locked.currency
        if listing.published_at is None:
            listing.published_at = timezone.now()
        listing.save(
            update_fields=[
                "current_version",
                "providers",
                "pricing",
                "price_cents",
                "currency",
                "published_at",
                "updated_at",
            ]
        )
        # Installs that upgrade automatically move on (marketplace/auto_upgrade.py).
        transaction.on_commit(lambda: enqueue(AUTO_UPGRADE_TASK), robust=True)

    index_listing(listing)
    return locked


@transaction.atomic
def version_reject(*, user: Any, version: ListingVersion, reason: str) -> ListingVersion:
    _require_staff(user)
    reason = _reason(reason)
    return _decide(_locked_version(version), user, ListingVersion.Status.REJECTED, reason)


@transaction.atomic
def version_request_changes(*, user: Any, version: ListingVersion, reason: str) -> ListingVersion:
    _require_staff(user)
    reason = _reason(reason)
    return _decide(_locked_version(version), user, ListingVersion.Status.CHANGES_REQUESTED, reason)


@transaction.atomic
def listing_unlist(*, user: Any, listing: Listing, reason: str) -> Listing:
    _require_staff(user)
    reason = _reason(reason)
    Listing.objects.filter(pk=listing.pk).update(
        unlisted_at=timezone.now(), unlisted_reason=reason[:300], updated_at=timezone.now()
    )
    listing.refresh_from_db()
    return listing


@transaction.atomic
def listing_relist(*, user: Any, listing: Listing) -> Listing:
    _require_staff(user)
    Listing.objects.filter(pk=listing.pk).update(
        unlisted_at=None, unlisted_reason="", updated_at=timezone.now()
    )
    listing.refresh_from_db()
    return listing


# --- flags -----------------------------------------------------------------------------------


@transaction.atomic
def flag_create(*, user: Any, listing: Listing, reason: str, details: str = "") -> Flag:
    """Report a listing to staff. One open report per person and listing (Conflict when they
    already have one); once staff resolve it they may report the listing again."""
    if user is None or not getattr(user, "is_authenticated", False):
        raise PermissionDenied("Sign in to report a listing.")
    if reason not in Flag.Reason.values:
        raise ValidationFailed(
            "Choose why you report this listing.",
            fields={"reason": [f"One of: {', '.join(Flag.Reason.values)}."]},
        )
    details = (details or "").strip()
    if reason == Flag.Reason.OTHER and not details:
        raise ValidationFailed(
            "Tell us what is wrong.", fields={"details": ["Required when the reason is Other."]}
        )
    already = Conflict("You already flagged this listing; staff will look at it.")
    if Flag.objects.filter(listing=listing, reporter=user, resolved_at__isnull=True).exists():
        raise already
    try:
        with transaction.atomic():  # a second click racing the first meets the constraint
            return Flag.objects.create(
                listing=listing, reporter=user, reason=reason, details=details
            )
    except IntegrityError as exc:
        raise already from exc


@transaction.atomic
def flag_resolve(*, user: Any, flag: Flag, resolution: str = "") -> Flag:
    _require_staff(user)
    if flag.resolved_at is None:
        flag.resolved_at = timezone.now()
        flag.resolved_by = user
        flag.resolution = (resolution or "").strip()[:300]
        flag.save(update_fields=["resolved_at", "resolved_by", "resolution"])
    return flag


# --- installs --------------------------------------------------------------------------------


@transaction.atomic
def install(*, access: Access, listing: Listing) -> Install:
    """Copy the listing's current version into the workspace, pinned to that version."""
    access.require(Perm.BUILD)
    listing = Listing.objects.select_for_update().get(pk=listing.pk)
    if not listing.is_public or listing.current_version is None:
        raise NotFound("This listing is not available.")
    if Install.objects.filter(
        listing=listing, workspace=access.workspace, uninstalled_at__isnull=True
    ).exists():
        raise Conflict(f"“{listing.title}” is already installed in this workspace.")
    version = listing.current_version
    pricing.install_require_purchase(workspace_id=access.workspace.pk, version=version)
    with schema_context(access.workspace.schema_name):
        object_kind, object_id = snapshot.install_snapshot(
            access, version.definition, listing.kind, version.pk, name=listing.title
        )
    created = Install.objects.create(
        listing=listing,
        version=version,
        workspace=access.workspace,
        installed_by_id=access.actor_id,
        object_kind=object_kind,
        object_id=object_id,
    )
    Listing.objects.filter(pk=listing.pk).update(install_count=F("install_count") + 1)
    audit.record_for(
        access,
        action=audit.Action.LISTING_INSTALLED,
        target=created,
        metadata={"listing": listing.slug, "version": version.number},
    )
    return created


def _locked_install(access: Access, install: Install) -> Install:
    locked = (
        Install.objects.select_for_update()
        .select_related("listing", "version")
        .filter(pk=install.pk, workspace=access.workspace, uninstalled_at__isnull=True)
        .first()
    )
    if locked is None:
        raise NotFound("No active install with that id in this workspace.")
    return locked


def _upgrade_workflow(access: Access, install: Install, new: ListingVersion) -> None:

    workflow = Workflow.objects.filter(pk=install.object_id).first()
    if workflow is None or workflow.active_version is None:
        raise NotFound("The installed workflow no longer exists in this workspace.")
    # The copy's agent steps hold the copies' ids; pair them with the originals step by step.
    old_doc = install.version.definition["workflow"]
    pairs = zip(
        snapshot.step_bodies(old_doc),
        snapshot.step_bodies(workflow.active_version.definition),
        strict=False,
    )
    copies = {
        old.get("agent"): agent_refs.agent_id_of(mine)
        for (old_type, old), (_, mine) in pairs
        if old_type == "agent"
    }
    names: dict[str, str] = {}
    for spec in new.definition.get("agents", []):
        copy_id = copies.get(spec["name"])
        agent = (
            Agent.objects.filter(pk=copy_id, archived_at__isnull=True).first()
            if copy_id is not None
            else None
        )
        if agent is None:
            names[spec["name"]] = snapshot.agent_copy_create(access, spec, new.pk).name
            continue
        config, _ = snapshot.agent_config(access, spec)
        agent_update(access=access, agent_id=agent.pk, **config)
        Agent.objects.filter(pk=agent.pk).update(listing_version_id=new.pk)
        names[spec["name"]] = agent.name
    document = agent_refs.bind(
        snapshot.workflow_models(access, snapshot.rename_agents(new.definition["workflow"], names))
    )
    if document != workflow.active_version.definition:
        version_save(
            access=access,
            workflow=workflow,
            definition=document,
            note=f"Upgraded to marketplace version {new.number}.",
            source=WorkflowVersion.Source.IMPORT,
            publish=True,
        )
    Workflow.objects.filter(pk=workflow.pk).update(listing_version_id=new.pk)


def install_trial_discard(install: Install) -> None:
    """Archive the trial copy an automatic upgrade is evaluating for `install`, if any (its
    evaluation and runs stay), and forget it on the row (the caller saves). The platform's own
    cleanup: it acts with nobody's role, so it works after the person who turned automatic
    upgrades on left or was demoted."""
    trial = install.auto_trial or {}
    install.auto_trial = {}
    if not trial:
        return
    system = Access(workspace=install.workspace, role=Role.OWNER)
    with schema_context(install.workspace.schema_name):
        if trial["kind"] == Listing.Kind.WORKFLOW:
            workflow = Workflow.objects.filter(pk=trial["id"], archived_at__isnull=True).first()
            if workflow is not None:
                with contextlib.suppress(ApplicationError):  # deleted meanwhile
                    workflow_archive(access=system, workflow=workflow)
        agent_ids = [*trial.get("agents", [])]
        if trial["kind"] == Listing.Kind.AGENT:
            agent_ids.append(trial["id"])
        for agent_id in agent_ids:
            with contextlib.suppress(ApplicationError):  # deleted by hand: nothing to archive
                agent_archive(access=system, agent_id=agent_id)


def _stop_automatic_evaluation(install: Install) -> None:
    """An install upgraded or uninstalled by hand: the evaluation of its trial copy is moot."""
    if install.auto_trial:
        install_trial_discard(install)
        install.auto_state, install.auto_note = "", ""
        install.save(update_fields=["auto_trial", "auto_state", "auto_note"])


@transaction.atomic
def upgrade(*, access: Access, install: Install, expected_version_id: int | None = None) -> Install:
    """Move an install to the listing's current version: a new version of the copy. With
    `expected_version_id`, only to that version (Conflict when the listing has moved on).
    A paid version needs a runnable purchase of the listing first (PurchaseRequired, 402, as
    for installing and for automatic upgrades): else the copy would be moved onto a version it
    cannot run."""

    access.require(Perm.BUILD)
    locked = _locked_install(access, install)
    new = locked.listing.current_version
    if new is None or not locked.listing.is_public:
        raise NotFound("This listing is not available.")
    if new.pk == locked.version_id:
        raise Conflict(f"Already on the latest version ({new.number}).")
    if expected_version_id is not None and new.pk != expected_version_id:
        raise Conflict(
            f"The listing's current version is now version {new.number}, not the one checked."
        )
    try:
        pricing.install_require_purchase(workspace_id=access.workspace.pk, version=new)
    except pricing.PurchaseRequired:
        raise pricing.PurchaseRequired(
            f"Version {new.number} of “{locked.listing.title}” is paid "
            f"({pricing.price_terms(new)}): an owner or admin buys it first on "
            f"{pricing.listing_path(locked.listing)}, then upgrades; this install stays on "
            f"version {locked.version.number}."
        ) from None
    _stop_automatic_evaluation(locked)
    with schema_context(access.workspace.schema_name):
        if locked.object_kind == Listing.Kind.AGENT:
            spec = new.definition["agent"]
            config, _ = snapshot.agent_config(access, spec)
            agent_update(
                access=access,
                agent_id=locked.object_id,
                description=spec.get("description") or "",
                category=spec.get("category") or "",
                **config,
            )
            Agent.objects.filter(pk=locked.object_id).update(listing_version_id=new.pk)
        else:
            _upgrade_workflow(access, locked, new)
    previous = locked.version.number
    locked.version = new
    locked.upgraded_at = timezone.now()
    locked.save(update_fields=["version", "upgraded_at"])
    audit.record_for(
        access,
        action=audit.Action.LISTING_UPGRADED,
        target=locked,
        metadata={"listing": locked.listing.slug, "from": previous, "to": new.number},
    )
    return locked


@transaction.atomic
def uninstall(*, access: Access, install: Install) -> Install:
    """End the install and archive the copy (its runs and versions stay)."""

    access.require(Perm.BUILD)
    locked = _locked_install(access, install)
    _stop_automatic_evaluation(locked)
    with schema_context(access.workspace.schema_name):
        if locked.object_kind == Listing.Kind.AGENT:
            with contextlib.suppress(NotFound):  # deleted by hand: nothing left to archive
                agent_archive(access=access, agent_id=locked.object_id)
        else:
            workflow = Workflow.objects.filter(pk=locked.object_id).first()
            if workflow is not None:
                workflow_archive(access=access, workflow=workflow)
    locked.uninstalled_at = timezone.now()
    locked.save(update_fields=["uninstalled_at"])
    Listing.objects.filter(pk=locked.listing_id, install_count__gt=0).update(
        install_count=F("install_count") - 1
    )
    audit.record_for(
        access,
        action=audit.Action.LISTING_UNINSTALLED,
        target=locked,
        metadata={"listing": locked.listing.slug},
    )
    return locked


# --- statistics ------------------------------------------------------------------------------

# Table names and the window are constants; the listing id is a parameter.
_REFRESH_STATS_SQL = f"""
UPDATE {Listing._meta.db_table} AS l SET
    run_count = (SELECT count(*) FROM {RunSample._meta.db_table} WHERE listing_id = %(id)s),
    success_rate = s.rate,
    p95_latency_ms = round(s.p95)::integer,
    median_cost_usd = round(s.median::numeric, 6)
FROM (
    SELECT avg(CASE WHEN succeeded THEN 1.0 ELSE 0.0 END)::double precision AS rate,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY cost_usd) AS median
    FROM (
        SELECT succeeded, latency_ms, cost_usd FROM {RunSample._meta.db_table}
        WHERE listing_id = %(id)s ORDER BY created_at DESC, id DESC LIMIT {STATS_WINDOW}
    ) AS recent
) AS s
WHERE l.id = %(id)s
"""  # noqa: S608


@transaction.atomic
def record_run(
    *,
    listing_version_id: int,
    succeeded: bool,
    latency_ms: int,
    cost_usd: Any,
    workspace: Workspace,
) -> RunSample | None:
    """A finished run of an installed copy: a sample (numbers only), the install's run count,
    and the listing's figures over its last 1000 samples. None for an unknown version."""
    version = ListingVersion.objects.filter(pk=listing_version_id).first()
    if version is None:
        return None
    sample = RunSample.objects.create(
        listing_id=version.listing_id,
        version=version,
        succeeded=bool(succeeded),
        latency_ms=max(0, int(latency_ms)),
        cost_usd=cost_usd or 0,
    )
    Install.objects.filter(
        listing_id=version.listing_id, workspace=workspace, uninstalled_at__isnull=True
    ).update(runs_completed=F("runs_completed") + 1)
    with connection.cursor() as cursor:
        cursor.execute(_REFRESH_STATS_SQL, {"id": version.listing_id})
    return sample


# --- reviews ---------------------------------------------------------------------------------


def reviewer_workspaces(
    *, listing: Listing, workspaces: list[Workspace], installs: Iterable[Install] | None = None
) -> list[Workspace]:
    """Those of `workspaces` that may review `listing` (`review_save`'s rule, for the page's
    picker): it is installed there and ran at least once; for a paid listing (with billing
    on), it was also bought there and ran successfully. `installs`: the listing's installs in
    those workspaces (uninstalled ones included), when the caller has them already."""
    if installs is None:
        installs = Install.objects.filter(listing=listing, workspace__in=workspaces)
    allowed = {i.workspace_id for i in installs if i.runs_completed >= 1}
    if allowed and listing.pricing != Listing.Pricing.FREE and pricing.checkout_active():
        allowed &= set(
            Purchase.objects.filter(
                buyer__in=workspaces, listing=listing, first_success_at__isnull=False
            ).values_list("buyer_id", flat=True)
        )
    return [w for w in workspaces if w.pk in allowed]


@transaction.atomic
def review_save(*, access: Access, listing: Listing, rating: int, text: str = "") -> Review:
    """A workspace's review (one per workspace; saving again edits it). Only a workspace that
    installed the listing and ran it at least once may review it; for a paid listing (with
    billing on), only a workspace that bought it and ran it successfully."""
    access.require(Perm.RUN)
    paid = listing.pricing != Listing.Pricing.FREE and pricing.checkout_active()
    if (
        paid
        and not Purchase.objects.filter(
            buyer=access.workspace, listing=listing, first_success_at__isnull=False
        ).exists()
    ):
        raise PermissionDenied(
            f"“{listing.title}” is a paid listing: only workspaces that bought it and ran it "
            "successfully at least once may review it."
        )
    if not Install.objects.filter(
        listing=listing, workspace=access.workspace, runs_completed__gte=1
    ).exists():
        raise PermissionDenied(
            "Only workspaces that installed this listing and ran it at least once may review it."
        )
    try:
        rating = int(rating)
    except (TypeError, ValueError):
        rating = 0
    if not 1 <= rating <= 5:
        raise ValidationFailed(
            "Rate from 1 to 5 stars.", fields={"rating": ["Choose 1 to 5 stars."]}
        )
    text = (text or "").strip()
    if len(text) > 5000:
        raise ValidationFailed("The review is too long.", fields={"text": ["At most 5000."]})
    review, _ = Review.objects.update_or_create(
        listing=listing,
        workspace=access.workspace,
        defaults={"rating": rating, "text": text, "author_id": access.actor_id},
    )
    figures = Review.objects.filter(listing=listing).aggregate(n=Count("id"), avg=Avg("rating"))
    Listing.objects.filter(pk=listing.pk).update(
        review_count=figures["n"],
        rating_avg=round(figures["avg"], 2) if figures["avg"] is not None else None,
    )
    return review


@transaction.atomic
def review_reply(*, access: Access, review: Review, text: str) -> Review:
    """The publisher's one public reply to a review."""
    access.require(Perm.BUILD)
    locked = (
        Review.objects.select_for_update().select_related("listing__publisher").get(pk=review.pk)
    )
    if locked.listing.publisher.workspace_id != access.workspace.pk:
        raise PermissionDenied("Only the listing's publisher may reply to its reviews.")
    if locked.reply:
        raise Conflict("This review already has a reply.")
    text = (text or "").strip()
    if not text or len(text) > 5000:
        raise ValidationFailed(
            "Write a reply of 1–5000 characters.", fields={"text": ["1–5000 characters."]}
        )
    locked.reply = text
    locked.replied_at = timezone.now()
    locked.save(update_fields=["reply", "replied_at", "updated_at"])
    notify_on_commit(
        user_ids=[locked.author_id],
        event=Event(
            kind=Kind.REVIEW_REPLY,
            dedupe_key=f"review_reply:{locked.pk}",
            title=f"{locked.listing.publisher.display_name} replied to your review of "
            f"“{locked.listing.title}”",
            body=text[:1000],
            url=reverse("marketplace_listing", kwargs={"slug": locked.listing.slug}),
            workspace_id=locked.workspace_id,
        ),
    )
    return locked
