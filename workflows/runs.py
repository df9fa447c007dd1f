"""Writes on workflow runs: start, cancel, decide an approval, resume a webhook wait, retry a
step, resume a failed run, re-run. Each checks access and the transition, then hands the state
change to the engine (workflows/engine/), which holds the run's row lock while it changes
anything and enqueues what became ready after commit.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from django.db import transaction

from billing import quotas
from core.exceptions import Conflict, NotFound, ValidationFailed
from core.hooks import listing_copy_check
from notifications.services import notifications_resolve_on_commit
from tenants.permissions import Access, Perm
from tenants.schemas import current_schema
from workflows import engine, events, notices
from workflows.models import (
    RunStatus,
    StepRun,
    StepStatus,
    Trigger,
    Workflow,
    WorkflowRun,
    WorkflowVersion,
)
from workflows.runnable import inputs_check, version_require_runnable

__all__ = [
    "approval_decide",
    "inputs_check",
    "listing_run_check",
    "run_cancel",
    "run_rerun",
    "run_resume",
    "run_start",
    "step_retry",
    "version_require_runnable",
    "webhook_wait_resume",
]


def run_start(
    *,
    workflow: Workflow,
    inputs: dict[str, Any],
    trigger: str,
    version: WorkflowVersion | None = None,
    created_by_id: int | None = None,
    api_key_prefix: str = "",
    callback_url: str = "",
    trigger_ref: Trigger | None = None,
    access: Access | None = None,
) -> WorkflowRun:
    """Start a run of `version` (None: the workflow's active version). The run and a step run
    per node are written in one transaction; the entry step is enqueued after commit.

    ValidationFailed(fields={"inputs": [...]}) names each input that is missing or of the wrong
    type; defaults declared in the definition are applied."""
    if access is not None:
        access.require(Perm.RUN)
        if created_by_id is None:
            created_by_id = access.actor_id
    if workflow.archived_at is not None:
        raise Conflict("This workflow is archived; restore it before running it.")
    target = version or workflow.active_version
    if target is None:
        raise ValidationFailed(
            "This workflow has no published version to run.",
            fields={"version": ["Publish a version first, or pick one."]},
        )
    if target.workflow_id != workflow.pk:
        raise ValidationFailed(
            "That version belongs to another workflow.", fields={"version": ["Unknown version."]}
        )
    version_require_runnable(workflow=workflow, version=target)
    checked = inputs_check(target.definition, inputs)
    with transaction.atomic():  # the run counts against the plan only if it is created
        listing_run_check(workflow)
        quotas.run_reserve(workspace_id=access.workspace.pk if access is not None else None)
        run = engine.run_start_internal(
            version=target,
            inputs=checked,
            trigger=trigger,
            created_by_id=created_by_id,
            api_key_prefix=api_key_prefix,
            callback_url=callback_url,
            trigger_ref_id=trigger_ref.pk if trigger_ref is not None else None,
        )
        transaction.on_commit(
            partial(events.workflow_run_started, current_schema(), workflow.pk, run.pk)
        )
        return run


def listing_run_check(workflow: Workflow, *, surface: Literal["run", "step_test"] = "run") -> None:
    """An installed listing's copy runs only if the marketplace allows it (a paid listing needs
    a runnable purchase; a per-run one answers only in runs, not in a step test): asked through
    a hook, since workflows never import the marketplace."""
    listing_copy_check("workflow", workflow.listing_version_id, surface=surface)


def run_cancel(*, access: Access, run: WorkflowRun) -> None:
    """Cancel a run that has not ended. Steps not started are cancelled; a running step's
    result is discarded when it completes (what it spent stays in the ledger and the totals)."""
    access.require(Perm.RUN)
    if not engine.run_cancel_internal(run.pk, f"Cancelled by {access.label}."):
        raise Conflict("This run has already ended.")


def approval_decide(*, access: Access, step: StepRun, approved: bool, comment: str) -> None:
    """Approve or reject a waiting approval step. Approvers "admins" need `workspace.update`,
    "members" need `run`. A rejection with no "rejected" edge fails the run with the comment."""
    if step.node_type != "approval":
        raise Conflict(  # the request is fine; this step is not one that takes a decision
            "This step is not an approval step.", fields={"step": ["Not an approval."]}
        )
    plan = engine.plan_for(WorkflowVersion.objects.defer("definition").get(runs__steps__pk=step.pk))
    approvers = plan.definition.step(step.node_id).config.get("approvers", "members")
    access.require(Perm.WORKSPACE_UPDATE if approvers == "admins" else Perm.RUN)
    engine.step_decide(
        step_id=step.pk,
        run_id=step.run_id,
        approved=approved,
        comment=(comment or "").strip()[:2000],
        by_id=access.actor_id,
        by_label=access.label,
    )
    # Every approver's inbox stops offering this decision.
    notifications_resolve_on_commit(subjects=[notices.approval_subject(current_schema(), step.pk)])


def webhook_wait_resume(*, token: str, payload: Any) -> StepRun:
    """Complete the waiting webhook step whose resume token this is, with `payload` as its
    output. NotFound for an unknown token or a step that is no longer waiting."""
    step = engine.webhook_resume(token=token, payload=payload)
    if step is None:
        raise NotFound("No step is waiting for a webhook at this address.")
    return step


def _listing_check_of_run(run_id: int) -> None:
    """Retrying a step or resuming a run runs the copy again: the marketplace is asked as for
    a new run (`listing_run_check`; a per-run purchase still charges the run once, when it
    succeeds). The run's own workflow, even when it is a sub-workflow's child."""
    workflow = Workflow.objects.filter(runs__pk=run_id).first()
    if workflow is not None:
        listing_run_check(workflow)


def step_retry(*, access: Access, step: StepRun) -> None:
    """Give a failed step a new attempt; its run goes back to running."""
    access.require(Perm.RUN)
    if step.parent_id is not None:
        raise Conflict(
            "Retry the map step: its failed items run again and succeeded ones are kept.",
            fields={"step": ["This is an item of a map step."]},
        )
    if step.status != StepStatus.FAILED:
        raise Conflict(  # the step's state, not the request, is what is wrong
            "Only a failed step can be retried.", fields={"step": ["This step did not fail."]}
        )
    _listing_check_of_run(step.run_id)
    engine.steps_retry(run_id=step.run_id, step_ids=[step.pk])


def run_resume(*, access: Access, run: WorkflowRun) -> None:
    """Resume a failed run from its failed steps: each gets a new attempt, the steps the
    failure stopped follow, and steps that succeeded are never run (or paid for) again."""
    access.require(Perm.RUN)
    if run.status != RunStatus.FAILED:
        raise Conflict(
            "Only a failed run can be resumed.", fields={"run": [f"This run is {run.status}."]}
        )
    _listing_check_of_run(run.pk)
    engine.steps_retry(run_id=run.pk, step_ids=None)


def run_rerun(*, access: Access, run: WorkflowRun) -> WorkflowRun:
    """A new run of the same version with the same inputs (trigger "rerun")."""
    access.require(Perm.RUN)
    workflow = Workflow.objects.filter(pk=run.workflow_id).first()
    if workflow is None or workflow.archived_at is not None:
        raise Conflict("This workflow is archived; restore it before running it again.")
    version = WorkflowVersion.objects.get(pk=run.version_id)
    with transaction.atomic():  # a rerun is a new run: it counts against the plan
        listing_run_check(workflow)
        quotas.run_reserve(workspace_id=access.workspace.pk)
        return engine.run_start_internal(
            version=version,
            inputs=dict(run.inputs or {}),
            trigger=WorkflowRun.TriggerKind.RERUN,
            created_by_id=access.actor_id,
            api_key_prefix=access.api_key.prefix if access.api_key is not None else "",
            rerun_of_id=run.pk,
        )
