"""Celery tasks of the workflow engine (periodic ones of triggers and retention are in
workflows/periodic.py)."""

from __future__ import annotations

import logging

from celery import shared_task
from django_tenants.utils import get_public_schema_name, schema_context

from tenants.models import Workspace
from workflows import engine

logger = logging.getLogger(__name__)


@shared_task(
    name="workflows.execute_step",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=0,
    ignore_result=True,
    # tenant-schemas-celery looks the workspace up by schema for every task; a workspace row
    # barely changes, so keep it for a while instead of one query per step.
    tenant_cache_seconds=30,
)
def execute_step(step_run_id: int) -> str:
    """Runs in the schema of the workspace that queued it (tenant-schemas-celery). At-least-once:
    a late, duplicate or redelivered message is harmless (see workflows/engine.py)."""
    return engine.step_execute(step_run_id)


@shared_task(name="workflows.recover_stalled", max_retries=0, ignore_result=True)
def recover_stalled() -> int:
    """Beat task: in every workspace, re-send steps that lost their message or their worker,
    and fail webhook waits whose time ran out. One workspace's failure does not stop the rest."""
    touched = 0
    workspaces = Workspace.objects.filter(is_template=False).exclude(
        schema_name=get_public_schema_name()
    )
    for schema_name in workspaces.order_by("pk").values_list("schema_name", flat=True):
        try:
            with schema_context(schema_name):
                touched += engine.stalled_recover()
        except Exception:  # see docstring
            logger.exception("recovering stalled workflow steps failed in schema %s", schema_name)
    return touched
