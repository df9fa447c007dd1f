"""What a workflow run tells people (notifications app): an approval waiting for those who may
decide it, a failed run for whoever started it. Called after the engine's transaction commits,
in the run's schema; the dedupe keys make a redelivered step or finish notify once."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, ParamSpec

from django.urls import reverse

from notifications.kinds import Kind
from notifications.services import Event, notifications_resolve, notify
from tenants.models import Workspace
from tenants.permissions import Perm
from tenants.selectors import member_ids_with
from workflows.models import StepRun, Workflow

logger = logging.getLogger(__name__)
P = ParamSpec("P")


def _never_raises(function: Callable[P, None]) -> Callable[P, None]:
    """These run in the engine's after-commit list, before the run's live event: a failure
    here is logged and must not stop what follows (nor touch the committed run)."""

    @functools.wraps(function)
    def quiet(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            function(*args, **kwargs)
        except Exception:
            logger.exception("workflow notification %s failed", function.__name__)

    return quiet


def approval_subject(schema: str, step_id: int) -> str:
    """What every approver's notification of one approval step is about."""
    return f"workflows.step:{schema}:{step_id}"


def _workspace(schema: str) -> Workspace:
    return Workspace.objects.only("pk", "slug", "name").get(schema_name=schema)


@_never_raises
def approval_waiting(
    *,
    schema: str,
    run_id: int,
    workflow_id: int,
    step_id: int,
    attempt: int,
    node_label: str,
    step_input: Any,
) -> None:
    """Notify the members allowed to decide (the rule of workflows.runs.approval_decide:
    approvers "admins" need workspace.update, "members" need run)."""
    shown = step_input if isinstance(step_input, dict) else {}
    admins_only = shown.get("approvers", "members") == "admins"
    workspace = _workspace(schema)
    name = Workflow.objects.filter(pk=workflow_id).values_list("name", flat=True).first() or ""
    slug = workspace.slug
    message = str(shown.get("message") or "")
    notify(
        user_ids=member_ids_with(
            workspace_id=workspace.pk,
            perm=Perm.WORKSPACE_UPDATE if admins_only else Perm.RUN,
        ),
        event=Event(
            kind=Kind.APPROVAL_WAITING,
            dedupe_key=f"approval:{schema}:{step_id}:{attempt}",
            title=f"Approval waiting: “{node_label}” in {name} (run #{run_id})",
            body=message[:1000],
            url=reverse("workflow_run_detail", kwargs={"workspace_slug": slug, "run_id": run_id}),
            workspace_id=workspace.pk,
            subject=approval_subject(schema, step_id),
            action={
                "decide_url": reverse(
                    "workflow_step_decide",
                    kwargs={"workspace_slug": slug, "run_id": run_id, "step_id": step_id},
                )
            },
        ),
    )


@_never_raises
def run_ended(
    *,
    schema: str,
    run_id: int,
    workflow_id: int,
    status: str,
    error: str,
    ended_at: str,
    created_by_id: Any,
) -> None:
    """A run ended: its approvals no longer wait for anyone; a failed run started by a person
    (not a sub-workflow: its parent fails too) is notified to them."""
    approvals = StepRun.objects.filter(run_id=run_id, node_type="approval").values_list(
        "pk", flat=True
    )
    notifications_resolve(subjects=[approval_subject(schema, pk) for pk in approvals])
    if status != "failed" or not created_by_id:
        return
    workspace = _workspace(schema)
    name = Workflow.objects.filter(pk=workflow_id).values_list("name", flat=True).first() or ""
    notify(
        user_ids=[int(created_by_id)],
        event=Event(
            kind=Kind.RUN_FAILED,
            dedupe_key=f"run_failed:{schema}:workflow:{run_id}:{ended_at}",
            title=f"Workflow run #{run_id} of {name} failed",
            body=error[:1000],
            url=reverse(
                "workflow_run_detail", kwargs={"workspace_slug": workspace.slug, "run_id": run_id}
            ),
            workspace_id=workspace.pk,
        ),
    )
