"""Periodic tasks run by Celery beat (CELERY_BEAT_SCHEDULE in config/settings/base.py).

Beat sends them without a workspace, so they start in the public schema and visit each
workspace's schema in turn; one workspace's failure is logged and the others still run.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from tenants.schemas import each_live_workspace
from workflows import retention, triggers

logger = logging.getLogger(__name__)


@shared_task(name="workflows.fire_schedules", max_retries=0)
def fire_schedules() -> int:
    """Start the runs of every due schedule in every workspace; returns how many started."""
    now = timezone.now()
    fired = 0
    for workspace in each_live_workspace():
        if workspace.deletion_requested_at is not None:
            continue  # scheduled for deletion: nothing runs there until it is restored
        try:
            fired += triggers.schedules_fire_due(now=now)
        except Exception:  # see module docstring
            logger.exception("firing schedules failed in schema %s", workspace.schema_name)
    return fired


@shared_task(name="workflows.apply_retention", max_retries=0)
def apply_retention() -> dict[str, int]:
    """Each workspace drops finished runs older than its `run_retention_days` (0 = keep)."""
    return retention.retention_apply_all()
