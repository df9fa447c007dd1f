"""Reads on workflow runs and step runs, in the current workspace's schema."""

from __future__ import annotations

from datetime import date, datetime

from django.db.models import QuerySet

from core.exceptions import NotFound
from tenants.permissions import Access, Perm
from workflows.models import RecordedCall, StepRun, Workflow, WorkflowRun


def run_list(
    *,
    access: Access,
    workflow: Workflow | None = None,
    status: str | None = None,
    version_number: int | None = None,
    trigger: str | None = None,
    date_from: date | datetime | None = None,
    date_to: date | datetime | None = None,
) -> QuerySet[WorkflowRun]:
    """Runs, newest first. Dates are inclusive: a `date` covers its whole day."""
    access.require(Perm.WORKSPACE_VIEW)
    runs = WorkflowRun.objects.select_related("workflow", "version")
    if workflow is not None:
        runs = runs.filter(workflow=workflow)
    if status:
        runs = runs.filter(status=status)
    if version_number is not None:
        runs = runs.filter(version__number=version_number)
    if trigger:
        runs = runs.filter(trigger=trigger)
    if date_from is not None:
        runs = _since(runs, date_from)
    if date_to is not None:
        runs = _until(runs, date_to)
    return runs.order_by("-created_at", "-id")


def _since(runs: QuerySet[WorkflowRun], value: date | datetime) -> QuerySet[WorkflowRun]:
    if isinstance(value, datetime):
        return runs.filter(created_at__gte=value)
    return runs.filter(created_at__date__gte=value)


def _until(runs: QuerySet[WorkflowRun], value: date | datetime) -> QuerySet[WorkflowRun]:
    if isinstance(value, datetime):
        return runs.filter(created_at__lte=value)
    return runs.filter(created_at__date__lte=value)


def run_get(*, access: Access, run_id: int) -> WorkflowRun:
    """A run of this workspace. Reading back a run is allowed to whoever may start one (an API
    key with only the run scope reads the run it started)."""
    if not access.can(Perm.RUN):
        access.require(Perm.WORKSPACE_VIEW)
    run = (
        WorkflowRun.objects.select_related("workflow", "version", "parent_step")
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise NotFound("No workflow run with that id in this workspace.")
    return run


def step_get(step_id: int) -> StepRun:
    step = (
        StepRun.objects.select_related("run", "run__workflow", "run__version")
        .filter(pk=step_id)
        .first()
    )
    if step is None:
        raise NotFound("No step run with that id in this workspace.")
    return step


def run_steps(run: WorkflowRun) -> list[StepRun]:
    """The run's top-level step runs in definition order; a map step carries its items, in
    order, as `map_items`. Two queries whatever the size of the run."""
    rows = list(StepRun.objects.filter(run=run).order_by("item_index", "id"))
    position = {s["id"]: i for i, s in enumerate(run.version.definition.get("steps", []))}
    top = [s for s in rows if s.parent_id is None]
    items: dict[int, list[StepRun]] = {}
    for step in rows:
        if step.parent_id is not None:
            items.setdefault(step.parent_id, []).append(step)
    for step in top:
        step.map_items = items.get(step.pk, [])  # type: ignore[attr-defined]
    return sorted(top, key=lambda s: (position.get(s.node_id, len(position)), s.pk))


def child_runs(step: StepRun) -> QuerySet[WorkflowRun]:
    """The sub-workflow runs a step started, newest first."""
    return WorkflowRun.objects.filter(parent_step=step).order_by("-created_at", "-id")


def step_calls(step: StepRun) -> QuerySet[RecordedCall]:
    """The model and tool calls recorded for a step's attempts (what a redelivery replays)."""
    return RecordedCall.objects.filter(step=step).order_by("attempt", "kind", "index")
