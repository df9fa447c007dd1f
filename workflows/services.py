"""Writes for workflows: create (from scratch, a template or an import), details, archive and
restore, and immutable versions (save, publish, roll back).

Every write checks `Perm.BUILD`, runs in one transaction, validates the definition with
`workflows.validators` and leaves an audit event. Nothing invalid is ever published: the only
versions that may fail the checks are drafts the builder saved on purpose (`allow_incomplete`),
and publishing or running one of those is refused with the validators' messages. Version
numbers are assigned while holding the workflow row's lock, so concurrent saves get 2 and 3,
never 2 twice; a save that names the version it was made on (`based_on`) is refused with
Conflict once a newer one exists. Workflow names are unique (ignoring case) among a
workspace's non-archived workflows; a transaction-scoped advisory lock on the name serialises
the check.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from billing import quotas
from core.exceptions import Conflict, NotFound, ValidationFailed
from tenants import audit
from tenants.permissions import Access, Perm
from tenants.schemas import current_schema
from workflows import agent_refs, events, validators
from workflows.models import Workflow, WorkflowVersion

WORKFLOW_CREATED = audit.Action.WORKFLOW_CREATED
WORKFLOW_UPDATED = audit.Action.WORKFLOW_UPDATED
WORKFLOW_ARCHIVED = audit.Action.WORKFLOW_ARCHIVED
WORKFLOW_RESTORED = audit.Action.WORKFLOW_RESTORED
VERSION_SAVED = audit.Action.WORKFLOW_VERSION_SAVED
VERSION_PUBLISHED = audit.Action.WORKFLOW_VERSION_PUBLISHED
VERSION_ROLLED_BACK = audit.Action.WORKFLOW_VERSION_ROLLED_BACK

MAX_NAME = 80
MAX_DESCRIPTION = 500
MAX_CATEGORY = 40
MAX_NOTE = 200


def _details(name: str, description: str, category: str) -> tuple[str, str, str]:
    """The stripped name, description and category; ValidationFailed naming each bad one."""
    name, description, category = (
        (name or "").strip(),
        (description or "").strip(),
        (category or "").strip(),
    )
    errors: dict[str, list[str]] = {}
    if not name or len(name) > MAX_NAME:
        errors["name"] = [f"Give the workflow a name of 1–{MAX_NAME} characters."]
    if len(description) > MAX_DESCRIPTION:
        errors["description"] = [f"Use at most {MAX_DESCRIPTION} characters."]
    if len(category) > MAX_CATEGORY:
        errors["category"] = [f"Use at most {MAX_CATEGORY} characters."]
    if errors:
        raise ValidationFailed(
            "The workflow's details are not valid: " + ", ".join(errors) + ".", fields=errors
        )
    return name, description, category


def _lock_name(name: str) -> None:
    """Serialise name checks for this name in this workspace until the transaction ends."""
    key = f"workflow-name:{current_schema()}:{name.lower()}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [key])


def _name_taken(name: str, *, exclude: int | None = None) -> bool:
    others = Workflow.objects.filter(name__iexact=name, archived_at__isnull=True)
    if exclude is not None:
        others = others.exclude(pk=exclude)
    return others.exists()


def _require_free_name(name: str, *, exclude: int | None = None, hint: str = "") -> None:
    _lock_name(name)
    if _name_taken(name, exclude=exclude):
        message = f"Another workflow is already named “{name}”.{hint}"
        raise ValidationFailed(message, fields={"name": [message]})


def workflow_free_name(base: str) -> str:
    """`base`, or `base (2)`, `base (3)`… whichever is not taken."""
    base = base.strip()[:MAX_NAME] or "Workflow"
    if not _name_taken(base):
        return base
    for number in range(2, 1000):
        suffix = f" ({number})"
        candidate = base[: MAX_NAME - len(suffix)] + suffix
        if not _name_taken(candidate):
            return candidate
    return base  # the uniqueness check names the clash


def _locked(workflow_id: int) -> Workflow:
    """The workflow row, locked until the transaction ends."""
    workflow = Workflow.objects.select_for_update().filter(pk=workflow_id).first()
    if workflow is None:
        raise NotFound("No workflow with that id in this workspace.")
    return workflow


def _require_active(workflow: Workflow) -> None:
    if workflow.archived_at is not None:
        raise Conflict(f"“{workflow.name}” is archived; restore it before changing it.")


def _new_version(
    workflow: Workflow,
    definition: Any,
    *,
    access: Access,
    note: str,
    source: str,
    publish: bool,
) -> WorkflowVersion:
    """Should be called while holding the workflow row's lock (numbers must not collide)."""
    number = (workflow.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = WorkflowVersion(
        workflow=workflow,
        number=number,
        definition=copy.deepcopy(definition),
        note=(note or "").strip()[:MAX_NOTE],
        source=source,
        created_by_id=access.actor_id,
    )
    version.save()
    transaction.on_commit(
        partial(events.workflow_saved, current_schema(), workflow.pk, version.number)
    )
    fields = ["updated_at"]
    if publish:
        workflow.active_version = version
        fields.append("active_version")
    workflow.save(update_fields=fields)
    return version


def _audit(
    access: Access, action: str, workflow: Workflow, metadata: dict[str, Any] | None = None
) -> None:
    audit.record_for(access, action=action, target=workflow, metadata=metadata)


# --- workflows -------------------------------------------------------------------------------


@transaction.atomic
def workflow_create(
    *,
    access: Access,
    name: str,
    description: str = "",
    category: str = "",
    definition: Any,
    source: str = WorkflowVersion.Source.EDITOR,
    note: str = "",
    template_key: str = "",
) -> Workflow:
    """A new workflow whose version 1 (`definition`) is published. Problems with the details
    and with the definition are reported together."""
    access.require(Perm.BUILD)
    errors: dict[str, list[str]] = {}
    messages: list[str] = []
    try:
        name, description, category = _details(name, description, category)
    except ValidationFailed as exc:
        errors.update(exc.fields)
        messages.append(exc.message)
    definition = agent_refs.bind(definition)  # agent steps hold ids from now on
    try:
        validators.validate_or_raise(definition)
    except ValidationFailed as exc:
        errors.update(exc.fields)
        messages.append(exc.message)
    if errors:
        raise ValidationFailed(" ".join(messages), fields=errors)
    _require_free_name(name)
    quotas.workflow_room_require(workspace_id=access.workspace.pk)
    workflow = Workflow.objects.create(
        name=name,
        description=description,
        category=category,
        template_key=template_key[:60],
        created_by_id=access.actor_id,
    )
    version = _new_version(
        workflow, definition, access=access, note=note, source=source, publish=True
    )
    _audit(access, WORKFLOW_CREATED, workflow, {"version": version.number, "source": source})
    return workflow


@transaction.atomic
def workflow_update(
    *,
    access: Access,
    workflow: Workflow,
    name: str,
    description: str,
    category: str,
    mcp_exposed: bool | None = None,
) -> Workflow:
    """Change the descriptive details in place (no new version). Allowed while archived, so a
    name clash that blocks a restore can be resolved. `mcp_exposed` (None: unchanged) offers
    the workflow to MCP clients as a tool (mcp_server, docs/mcp.md); the audit entry's
    `changes` name every field that changed, old and new."""
    access.require(Perm.BUILD)
    name, description, category = _details(name, description, category)
    locked = _locked(workflow.pk)
    if locked.archived_at is None and name.lower() != locked.name.lower():
        _require_free_name(name, exclude=locked.pk)
    new: dict[str, Any] = {"name": name, "description": description, "category": category}
    if mcp_exposed is not None:
        new["mcp_exposed"] = mcp_exposed
    changes = {f: [getattr(locked, f), v] for f, v in new.items() if getattr(locked, f) != v}
    if not changes:
        return locked
    for field, value in new.items():
        setattr(locked, field, value)
    locked.save(update_fields=[*new, "updated_at"])
    _audit(access, WORKFLOW_UPDATED, locked, {"changes": changes})
    return locked


@transaction.atomic
def workflow_archive(*, access: Access, workflow: Workflow) -> None:
    """Hide it from lists and stop new runs and trigger fires; its runs and versions stay."""
    access.require(Perm.BUILD)
    locked = _locked(workflow.pk)
    if locked.archived_at is not None:
        return
    locked.archived_at = timezone.now()
    locked.save(update_fields=["archived_at", "updated_at"])
    workflow.archived_at = locked.archived_at
    _audit(access, WORKFLOW_ARCHIVED, locked)


@transaction.atomic
def workflow_restore(*, access: Access, workflow: Workflow) -> None:
    access.require(Perm.BUILD)
    locked = _locked(workflow.pk)
    if locked.archived_at is None:
        return
    _require_free_name(
        locked.name, exclude=locked.pk, hint=" Rename one of them, then restore this one."
    )
    quotas.workflow_room_require(workspace_id=access.workspace.pk)  # it counts as active again
    locked.archived_at = None
    locked.save(update_fields=["archived_at", "updated_at"])
    workflow.archived_at = None
    _audit(access, WORKFLOW_RESTORED, locked)


# --- versions --------------------------------------------------------------------------------


@transaction.atomic
def version_save(
    *,
    access: Access,
    workflow: Workflow,
    definition: Any,
    note: str = "",
    source: str = WorkflowVersion.Source.EDITOR,
    publish: bool = False,
    allow_incomplete: bool = False,
    based_on: int | None = None,
) -> WorkflowVersion:
    """A new version with `definition` (validated first), published if asked. A definition
    equal to the latest version's is refused: there is nothing to save.

    With `allow_incomplete` (the builder's step-by-step edits) a draft is saved even when the
    checks find problems — a step not connected yet, a prompt not written yet — so that a user
    can get from one valid workflow to the next one edit at a time; it must still pass
    `validators.check_structure` (known step types, unique ids, edges between steps that
    exist). A version to publish is always checked in full.

    `based_on` is the number of the version the caller edited. When someone saved a newer one
    since, nothing is saved and Conflict names it: a change is never silently overwritten.
    Without it the definition is saved whatever the latest version is."""
    return version_edit(
        access=access,
        workflow=workflow,
        edit=lambda _latest: definition,
        note=note,
        source=source,
        publish=publish,
        allow_incomplete=allow_incomplete,
        based_on=based_on,
    )


@transaction.atomic
def version_edit(
    *,
    access: Access,
    workflow: Workflow,
    edit: Callable[[Any], Any],
    note: str = "",
    source: str = WorkflowVersion.Source.EDITOR,
    publish: bool = False,
    allow_incomplete: bool = False,
    based_on: int | None = None,
) -> WorkflowVersion:
    """`version_save` of `edit(latest definition)`. The edit is applied while holding the
    workflow row's lock, so the version it changes is the one it replaces; a refused
    `based_on` is reported before whatever the edit or the checks would say about it."""
    access.require(Perm.BUILD)
    locked = _locked(workflow.pk)
    latest = locked.versions.order_by("-number").first()
    _require_based_on_latest(latest, based_on)
    edited = edit(latest.definition if latest is not None else {})
    definition = agent_refs.bind(edited)  # agent steps hold ids from now on
    if publish or not allow_incomplete:
        validators.validate_or_raise(definition)
    else:  # a draft may be incomplete, never malformed (decision 93)
        validators.structure_or_raise(definition)
    _require_active(locked)
    if latest is not None and latest.definition == definition:
        message = f"Nothing changed since version {latest.number}; nothing was saved."
        raise ValidationFailed(message, fields={"definition": [message]})
    version = _new_version(
        locked, definition, access=access, note=note, source=source, publish=publish
    )
    if publish:
        workflow.active_version = version
    _audit(
        access,
        VERSION_SAVED,
        locked,
        {"version": version.number, "source": source, "published": publish},
    )
    return version


def _require_based_on_latest(latest: WorkflowVersion | None, based_on: int | None) -> None:
    """The edit-conflict rule: a change made on version `based_on` is refused once another
    version is the latest."""
    if based_on is None or latest is None or based_on == latest.number:
        return
    if based_on > latest.number:
        raise Conflict(
            f"There is no version {based_on}: version {latest.number} is the latest; "
            "nothing was saved."
        )
    raise Conflict(
        f"Someone saved version {latest.number} since you opened version {based_on}; nothing "
        "was saved. Reload to see their change, then make yours again."
    )


@transaction.atomic
def version_publish(*, access: Access, version: WorkflowVersion) -> None:
    """Make `version` the one runs use. It is validated again: what it names (agents,
    sub-workflows) may have changed since it was saved."""
    access.require(Perm.BUILD)
    locked = _locked(version.workflow_id)
    _require_active(locked)
    if locked.active_version_id == version.pk:
        return
    validators.validate_or_raise(version.definition)
    previous = locked.active_version.number if locked.active_version else None
    locked.active_version = version
    locked.save(update_fields=["active_version", "updated_at"])
    version.workflow.active_version = version
    _audit(access, VERSION_PUBLISHED, locked, {"version": version.number, "previous": previous})


@transaction.atomic
def version_rollback(*, access: Access, version: WorkflowVersion) -> WorkflowVersion:
    """A new version copying `version`, published (history stays linear)."""
    access.require(Perm.BUILD)
    definition = agent_refs.bind(version.definition)  # labels: the agents' current names
    validators.validate_or_raise(definition)
    locked = _locked(version.workflow_id)
    _require_active(locked)
    new = _new_version(
        locked,
        definition,
        access=access,
        note=f"Rolled back to version {version.number}",
        source=WorkflowVersion.Source.ROLLBACK,
        publish=True,
    )
    _audit(access, VERSION_ROLLED_BACK, locked, {"version": new.number, "copy_of": version.number})
    return new
