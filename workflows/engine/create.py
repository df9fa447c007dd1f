"""Creating runs: the run row and a step run per node, the entry steps queued."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from workflows import events
from workflows.engine.dispatch import _after_commit, _send_many
from workflows.engine.plans import plan_for
from workflows.models import RunStatus, StepRun, StepStatus, WorkflowRun, WorkflowVersion


def run_create(
    *,
    version: WorkflowVersion,
    inputs: dict[str, Any],
    trigger: str,
    created_by_id: int | None = None,
    api_key_prefix: str = "",
    callback_url: str = "",
    trigger_ref_id: int | None = None,
    parent_step_id: int | None = None,
    rerun_of_id: int | None = None,
) -> tuple[WorkflowRun, list[int]]:
    """Write the run and a step run per node (entry steps queued, the rest pending). Must be
    called inside a transaction; returns the run and the step ids to enqueue after commit."""
    plan = plan_for(version)
    now = timezone.now()
    run = WorkflowRun.objects.create(
        workflow_id=version.workflow_id,
        version=version,
        status=RunStatus.QUEUED,
        trigger=trigger,
        trigger_ref_id=trigger_ref_id,
        inputs=inputs,
        parent_step_id=parent_step_id,
        rerun_of_id=rerun_of_id,
        created_by_id=created_by_id,
        api_key_prefix=api_key_prefix,
        callback_url=callback_url,
    )
    entry = set(plan.definition.entry_ids)
    steps = StepRun.objects.bulk_create(
        StepRun(
            run=run,
            node_id=step.id,
            node_type=step.type,
            status=StepStatus.QUEUED if step.id in entry else StepStatus.PENDING,
            queued_at=now if step.id in entry else None,
        )
        for step in plan.definition.steps
    )
    return run, [s.pk for s in steps if s.status == StepStatus.QUEUED]


def run_start_internal(**kwargs: Any) -> WorkflowRun:
    """`run_create` plus the enqueue and the event after commit."""
    with transaction.atomic():
        run, ready = run_create(**kwargs)
        run_id = run.pk

        def after() -> None:
            _send_many((step_id, 0.0) for step_id in ready)
            events.run_changed(run_id, ready)

        _after_commit(after)
    return run
