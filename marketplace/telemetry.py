"""Run completion → the listing's statistics. Called in the workspace's schema after a run of
an installed copy (an agent or a workflow with `listing_version_id`) has finished and committed.

Only numbers leave the workspace (succeeded, latency, cost), through
`marketplace.services.record_run`. A failure here is logged and never fails the run: the run's
own state is the truth, statistics are a convenience.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from tenants.models import Workspace
from tenants.schemas import current_schema

logger = logging.getLogger(__name__)


def _report(listing_version_id: int, succeeded: bool, latency_ms: int, cost: Decimal) -> None:
    from marketplace import services

    workspace = Workspace.objects.filter(schema_name=current_schema()).first()
    if workspace is None:
        return
    services.record_run(
        listing_version_id=listing_version_id,
        succeeded=succeeded,
        latency_ms=max(latency_ms, 0),
        cost_usd=cost,
        workspace=workspace,
    )


def workflow_run_finished(run_id: int) -> None:
    from workflows.models import RunStatus, WorkflowRun

    try:
        run = (
            WorkflowRun.objects.filter(pk=run_id, workflow__listing_version_id__isnull=False)
            .select_related("workflow")
            .only("status", "created_at", "finished_at", "cost_usd", "workflow__listing_version_id")
            .first()
        )
        if run is None or run.finished_at is None or run.workflow.listing_version_id is None:
            return
        if run.status == RunStatus.CANCELLED:
            return  # a cancel says nothing about the listing's quality
        latency = int((run.finished_at - run.created_at).total_seconds() * 1000)
        _report(
            run.workflow.listing_version_id,
            run.status == RunStatus.SUCCEEDED,
            latency,
            run.cost_usd,
        )
    except Exception:  # see the module docstring
        logger.warning(
            "could not record marketplace stats of workflow run %s", run_id, exc_info=True
        )


def agent_run_finished(run_id: int) -> None:
    from agents.models import AgentRun

    try:
        run = (
            AgentRun.objects.filter(pk=run_id, agent__listing_version_id__isnull=False)
            .select_related("agent")
            .first()
        )
        if run is None or run.finished_at is None or run.agent.listing_version_id is None:
            return
        started = run.started_at or run.created_at
        latency = int((run.finished_at - started).total_seconds() * 1000)
        _report(
            run.agent.listing_version_id,
            run.status == AgentRun.Status.SUCCEEDED,
            latency,
            run.cost_usd,
        )
    except Exception:  # see the module docstring
        logger.warning("could not record marketplace stats of agent run %s", run_id, exc_info=True)
