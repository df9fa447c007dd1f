"""Reads the builder pages need on top of workflows.selectors (the list's run counts, the
latest version, the dashboard card, the canvas's last run). Every query runs in the current
workspace schema."""

from __future__ import annotations

from django.db.models import Count, OuterRef, QuerySet, Subquery

from tenants.permissions import Access
from workflows import run_selectors, selectors
from workflows.models import StepRun, Workflow, WorkflowRun


def workflow_rows(*, access: Access, include_archived: bool = False) -> QuerySet[Workflow]:
    """Workflows with their active version, how many runs, and the last run's status and time
    (one query)."""
    last_run = WorkflowRun.objects.filter(workflow=OuterRef("pk")).order_by("-created_at", "-id")
    return (
        selectors.workflow_list(access=access, include_archived=include_archived)
        .select_related("active_version")
        .annotate(
            runs_count=Count("runs", distinct=True),
            last_run_status=Subquery(last_run.values("status")[:1]),
            last_run_at=Subquery(last_run.values("created_at")[:1]),
            versions_count=Count("versions", distinct=True),
        )
    )


def recent_workflows(*, access: Access, limit: int = 5) -> list[Workflow]:
    return list(
        selectors.workflow_list(access=access)
        .select_related("active_version")
        .annotate(runs_count=Count("runs"))
        .order_by("-updated_at", "-id")[:limit]
    )


def recent_runs(*, access: Access, limit: int = 5) -> list[WorkflowRun]:

    return list(run_selectors.run_list(access=access).select_related("workflow", "version")[:limit])


def last_run_states(workflow: Workflow) -> tuple[WorkflowRun | None, dict[str, str]]:
    """The workflow's latest run and the status of each of its steps (map items left out),
    for the canvas."""
    runs = WorkflowRun.objects.filter(workflow=workflow).select_related("version")
    run = runs.order_by("-created_at", "-id").first()
    if run is None:
        return None, {}
    rows = StepRun.objects.filter(run=run, parent__isnull=True).values_list("node_id", "status")
    return run, dict(rows)
