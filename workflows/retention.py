"""Run retention: finished workflow runs older than a cut-off are deleted, in batches.

Two entry points: `manage.py prune_runs --older-than 30d` and the daily periodic task, which
applies each workspace's `run_retention_days` (0 keeps everything). Queued, running and
waiting runs are never deleted, whatever their age.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, schema_context

from agents.models import WebhookDelivery
from core.exceptions import ValidationFailed
from tenants import audit
from tenants.models import Workspace
from tenants.permissions import Access, Perm
from workflows.models import RUN_FINISHED, WorkflowRun

logger = logging.getLogger(__name__)

MAX_RETENTION_DAYS = 3650
BATCH_SIZE = 500
_AGE = re.compile(r"^\s*(\d{1,6})\s*([dh])\s*$", re.IGNORECASE)


def parse_age(text: str) -> timedelta:
    """`30d` or `12h` → a timedelta; anything else is refused with an example."""
    match = _AGE.match(text or "")
    if match is None or int(match.group(1)) == 0:
        raise ValidationFailed(
            f"'{text}' is not an age: use a positive number of days or hours, like 30d or 12h.",
            fields={"older_than": ["Use Nd (days) or Nh (hours), e.g. 30d."]},
        )
    amount = int(match.group(1))
    return timedelta(days=amount) if match.group(2).lower() == "d" else timedelta(hours=amount)


def runs_prunable(*, older_than: timedelta, now: datetime | None = None) -> QuerySet[WorkflowRun]:
    """Finished runs that ended before the cut-off, in the current workspace. A sub-workflow
    run is kept while its parent run is still going (the parent reads its result)."""
    cutoff = (now or timezone.now()) - older_than
    ended_before = Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff)
    return (
        WorkflowRun.objects.filter(ended_before, status__in=RUN_FINISHED)
        .exclude(Q(parent_step__isnull=False) & ~Q(parent_step__run__status__in=RUN_FINISHED))
        .order_by("pk")
    )


def runs_prune(
    *,
    older_than: timedelta,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    on_progress: Callable[[int], object] | None = None,
) -> int:
    """Delete (or with `dry_run` only count) the prunable runs of the current workspace, with
    their step runs, recorded calls and webhook deliveries; returns how many runs.

    Each batch is locked (skipping runs someone else holds, e.g. a resume in progress) and its
    rows re-checked under the lock, so a run resumed meanwhile is never deleted."""
    now = now or timezone.now()
    if dry_run:
        return runs_prunable(older_than=older_than, now=now).count()
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(
                runs_prunable(older_than=older_than, now=now)
                .select_for_update(skip_locked=True, of=("self",))
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                return deleted
            WebhookDelivery.objects.filter(workflow_run_id__in=ids).delete()
            WorkflowRun.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
        if on_progress is not None:
            on_progress(len(ids))


def retention_apply_all(*, now: datetime | None = None) -> dict[str, int]:
    """The daily task: every workspace with a retention period drops its old finished runs.
    One workspace's failure is logged and does not stop the others."""
    results: dict[str, int] = {}
    workspaces = (
        Workspace.objects.filter(is_template=False, run_retention_days__gt=0)
        .exclude(schema_name=get_public_schema_name())
        .order_by("slug")
    )
    for workspace in workspaces:
        try:
            with schema_context(workspace.schema_name):
                results[workspace.slug] = runs_prune(
                    older_than=timedelta(days=workspace.run_retention_days), now=now
                )
        except Exception:  # see docstring
            logger.exception("run retention failed for workspace %s", workspace.slug)
    return results


@transaction.atomic
def workspace_retention_update(*, access: Access, days: int) -> Workspace:
    """Set how long finished runs are kept (0 keeps them); audited like a rename."""
    access.require(Perm.WORKSPACE_UPDATE)
    if not isinstance(days, int) or not 0 <= days <= MAX_RETENTION_DAYS:
        raise ValidationFailed(
            f"Keep runs for 0–{MAX_RETENTION_DAYS} days.",
            fields={"run_retention_days": [f"Enter a number from 0 to {MAX_RETENTION_DAYS}."]},
        )
    workspace = Workspace.objects.select_for_update().get(pk=access.workspace.pk)
    old = workspace.run_retention_days
    if old == days:
        return workspace
    workspace.run_retention_days = days
    workspace.save(update_fields=["run_retention_days", "updated_at"])
    access.workspace.run_retention_days = days
    audit.record_for(
        access,
        action=audit.Action.WORKSPACE_UPDATED,
        target=workspace,
        metadata={"run_retention_days": {"from": old, "to": days}},
    )
    return workspace
