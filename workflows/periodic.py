"""Periodic tasks run by Celery beat (CELERY_BEAT_SCHEDULE in config/settings/base.py).

Beat sends them without a workspace, so they start in the public schema and visit each
workspace's schema in turn; one workspace's failure is logged and the others still run.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, schema_context

from tenants.models import Workspace
from workflows import retention, triggers

logger = logging.getLogger(__name__)


@shared_task(name="workflows.fire_schedules", max_retries=0)
def fire_schedules() -> int:
    """Start the runs of every due schedule in every workspace; returns how many started."""
    now = timezone.now()
    fired = 0
    workspaces = Workspace.objects.filter(is_template=False).exclude(
        schema_name=get_public_schema_name()
    )
    for schema_name in workspaces.order_by("pk").values_list("schema_name", flat=True):
        try:
            with schema_context(schema_name):
                fired += triggers.schedules_fire_due(now=now)
        except Exception:  # see module docstring
            logger.exception("firing schedules failed in schema %s", schema_name)
    return fired


@shared_task(name="workflows.apply_retention", max_retries=0)
def apply_retention() -> dict[str, int]:
    """Each workspace drops finished runs older than its `run_retention_days` (0 = keep)."""
    return retention.retention_apply_all()
