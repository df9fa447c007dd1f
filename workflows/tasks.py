"""Celery tasks of the workflow engine (periodic ones of triggers and retention are in
workflows/periodic.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from celery import Task, shared_task
from django.conf import settings
from django_tenants.utils import schema_context

from agents.runs.executor import runs_recover
from core import recovery
from tenants.schemas import live_workspaces
from workflows import engine
from workflows.engine.dispatch import EXECUTE_STEP

logger = logging.getLogger(__name__)


# Celery has no type hints: `mypy --strict` reports its decorators as untyped, the project's
# `mypy .` does not (hence `unused-ignore`).
@shared_task(  # type: ignore[untyped-decorator, unused-ignore]
    name=EXECUTE_STEP,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    # tenant-schemas-celery looks the workspace up by schema for every task; a workspace row
    # barely changes, so keep it for a while instead of one query per step.
    tenant_cache_seconds=30,
    bind=True,
    **recovery.DATABASE_RETRY,
)
def execute_step(self: Task, step_run_id: int) -> str:
    """Runs in the schema of the workspace that queued it (tenant-schemas-celery). At-least-once:
    a late, duplicate or redelivered message is harmless (see workflows/engine/); losing the
    database retries it (core.recovery.DATABASE_RETRY)."""
    recovery.require_task_schema(self)
    return engine.step_execute(step_run_id)


@shared_task(  # type: ignore[untyped-decorator, unused-ignore]
    name="workflows.recover_stalled", max_retries=0, ignore_result=True
)
def recover_stalled(active_only: bool = False) -> int:
    """Beat task (every few seconds with `active_only`, for the workspaces that sent work in
    the last hour; every minute for all): in each workspace, re-send workflow steps and agent
    runs that lost their message or their worker, and fail webhook waits whose time ran out.
    One workspace's failure does not stop the rest."""
    schemas = recovery.active_schemas() if active_only else None
    if schemas is None:
        schemas = list(live_workspaces().order_by("pk").values_list("schema_name", flat=True))
    backlog = recovery.queue_backlog()
    overdue = timedelta(seconds=settings.RECOVERY_QUEUED_AFTER_SECONDS)
    touched = 0
    for schema_name in schemas:
        # Workflow steps and agent runs independently: one failing does not skip the other.
        sweeps: list[Callable[[], int]] = [
            lambda: engine.stalled_recover(queue_backlog=backlog, stalled_after=overdue),
            lambda: runs_recover(queue_backlog=backlog, queued_after=overdue),
        ]
        for sweep in sweeps:
            try:
                with schema_context(schema_name):
                    touched += sweep()
            except Exception:  # see docstring
                logger.exception("recovering stalled work failed in schema %s", schema_name)
    return touched
