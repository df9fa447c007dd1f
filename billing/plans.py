"""Which plan a workspace is on (issue 14, part 1: plans).

    workspace_plan(workspace=ws)        # its WorkspacePlan; created on the default plan if missing
    plan_start(workspace_id=..)         # put a new workspace on the default plan (with its trial)

Every workspace is on a plan: new ones are put on the default plan when `core.hooks.
workspace_created` fires (subscribed in `BillingConfig.ready`), and a workspace without a row
(created before billing, or whose hook failed) gets one the first time it is read.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.models import CreditGrant, Plan, WorkspacePlan
from core.hooks import WorkspaceCreated
from tenants.models import Workspace

# The plan new workspaces fall back to when no plan is marked default (migration 0003 creates it
# the same way; a flushed test database or a staff edit may leave none).
FREE_PLAN: dict[str, Any] = {
    "name": "Free",
    "description": "For trying the platform: small allowances, no overage.",
    "included_ai_spend_usd": Decimal("1.00"),
    "runs_per_month": 200,
    "seats": 3,
    "workflows": 5,
    "knowledge_storage_mb": 50,
    "api_requests_per_minute": 60,
}


def default_plan() -> Plan:
    """The plan marked default; without one, Free (created if missing) becomes the default."""
    plan = Plan.objects.filter(is_default=True).first()
    if plan is not None:
        return plan
    with transaction.atomic():
        free, _ = Plan.objects.select_for_update().get_or_create(key="free", defaults=FREE_PLAN)
        if not Plan.objects.filter(is_default=True).exists():
            free.is_default = True
            free.save(update_fields=["is_default", "updated_at"])
    return Plan.objects.get(is_default=True)


def month_after(start: datetime) -> datetime:
    """The same day and time next month (the 31st becomes the month's last day)."""
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def period_at(row: WorkspacePlan, now: datetime) -> tuple[datetime, datetime]:
    """The row's billing period that contains `now`: a period that ended without a run start
    to roll it over (quotas.run_reserve stores the roll) rolls forward here, month by month."""
    start, end = row.current_period_start, row.current_period_end
    while now >= end:
        start, end = end, month_after(end)
    return start, end


def plan_start(*, workspace_id: int, now: datetime | None = None) -> WorkspacePlan:
    """Put a workspace on the default plan, from `now`, with the plan's trial if it has one.
    Idempotent: a workspace that already has a plan keeps it."""
    now = now or timezone.now()
    existing = WorkspacePlan.objects.select_related("plan").filter(workspace_id=workspace_id)
    if (found := existing.first()) is not None:
        return found
    plan = default_plan()
    trial_ends = now + timedelta(days=plan.trial_days) if plan.trial_days else None
    try:
        with transaction.atomic():
            return WorkspacePlan.objects.create(
                workspace_id=workspace_id,
                plan=plan,
                status=WorkspacePlan.Status.TRIALING if trial_ends else WorkspacePlan.Status.ACTIVE,
                trial_ends_at=trial_ends,
                current_period_start=now,
                current_period_end=month_after(now),
            )
    except IntegrityError:  # another request created it first
        return existing.get()


def workspace_plan(*, workspace: Workspace) -> WorkspacePlan:
    """The workspace's plan row (creating it on the default plan if it has none)."""
    return plan_start(workspace_id=workspace.pk)


def on_workspace_created(event: WorkspaceCreated) -> None:
    """`core.hooks.workspace_created` subscriber: new workspaces start on the default plan."""
    plan_start(workspace_id=event.workspace_id)


def granted_usd(*, workspace_id: int, now: datetime) -> Decimal:
    """AI spend staff granted the workspace (billing.backoffice.credit_grant) for the period
    that holds `now`: it adds to the plan's included AI spend (quotas annotates the same sum
    onto the plan row before each priced call)."""
    total = CreditGrant.objects.filter(
        workspace_id=workspace_id, period_start__lte=now, period_end__gt=now
    ).aggregate(total=Sum("amount_usd"))["total"]
    return total or Decimal(0)
