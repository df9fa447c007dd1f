"""What a workspace uses of each plan allowance this period: one meter per allowance, counted
by the app that owns the rows (issue 14).

Billing sits below agents and workflows (import layers), so it cannot count their rows. Each
app registers a meter for what it owns in its `AppConfig.ready()`:

    usage.register_meter(usage.WORKFLOWS, label="Active workflows", unit=usage.Unit.COUNT,
                         count_fn=lambda workspace_id, period_start: ...)

Billing registers its own two (runs, from the plan row, and seats). A count function is
called with the workspace's schema active (pages and the API run there) and returns the
figure now; `period_start` matters only to figures that restart each period. The quota checks
(billing.quotas) and the Billing page and API read the same meters, so a limit is enforced on
the figure the owner sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from django.utils import timezone

from billing.invoices import subscription_interval
from billing.models import Plan, WorkspacePlan
from billing.plans import granted_usd, period_at, workspace_plan
from tenants.models import Invitation, Membership
from tenants.permissions import Access, Perm

RUNS = "runs"
AI_SPEND = "ai_spend"
SEATS = "seats"
WORKFLOWS = "workflows"
KNOWLEDGE_STORAGE = "knowledge_storage"
# The order the Billing page and the API list them in.
KEYS = (RUNS, AI_SPEND, SEATS, WORKFLOWS, KNOWLEDGE_STORAGE)

MIB = 1024 * 1024


class Unit(StrEnum):
    COUNT = "count"
    USD = "usd"  # dollars of model cost, a Decimal
    BYTES = "bytes"


Figure = int | Decimal
CountFn = Callable[[int, datetime], Figure]  # (workspace_id, period_start) -> the figure now


@dataclass(frozen=True)
class Meter:
    key: str
    label: str
    unit: Unit
    count: CountFn


_meters: dict[str, Meter] = {}


def register_meter(key: str, *, label: str, unit: Unit, count_fn: CountFn) -> None:
    """Register (or replace, on a second `ready()`) the counter of one allowance."""
    if key not in KEYS:
        raise ValueError(f"Unknown meter {key!r}: plans have allowances for {', '.join(KEYS)}.")
    _meters[key] = Meter(key, label, unit, count_fn)


def meter_count(key: str, *, workspace_id: int, period_start: datetime) -> Figure:
    """The figure of one meter now. Call with the workspace's schema active."""
    return _meters[key].count(workspace_id, period_start)


def plan_limit(plan: Plan, key: str) -> Figure | None:
    """What `plan` allows of meter `key` per period (None: unlimited), in the meter's unit."""
    if key == RUNS:
        return plan.runs_per_month
    if key == AI_SPEND:
        return plan.included_ai_spend_usd
    if key == SEATS:
        return plan.seats
    if key == WORKFLOWS:
        return plan.workflows
    if key == KNOWLEDGE_STORAGE:
        mb = plan.knowledge_storage_mb
        return None if mb is None else mb * MIB
    raise ValueError(f"Unknown meter {key!r}.")


# ------------------------------------------------------------------ billing's own meters


def runs_used(workspace_id: int, period_start: datetime) -> int:
    """Runs started this period: the plan row's count, unless its period ended since (then
    none yet; the next run start rolls the row over)."""
    used = (
        WorkspacePlan.objects.filter(
            workspace_id=workspace_id, current_period_start__gte=period_start
        )
        .values_list("runs_used", flat=True)
        .first()
    )
    return used or 0


def seats_taken(workspace_id: int) -> tuple[int, int]:
    """(members, pending invitations): what fills the plan's seats."""
    members = Membership.objects.filter(workspace_id=workspace_id).count()
    pending = Invitation.objects.filter(
        workspace_id=workspace_id,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    ).count()
    return members, pending


def register_billing_meters() -> None:
    register_meter(RUNS, label="Runs", unit=Unit.COUNT, count_fn=runs_used)
    register_meter(
        SEATS,
        label="Seats (members and pending invitations)",
        unit=Unit.COUNT,
        count_fn=lambda workspace_id, _start: sum(seats_taken(workspace_id)),
    )


# ------------------------------------------------------------------ the summary


@dataclass(frozen=True)
class Allowance:
    """One allowance of the plan and what the workspace used of it this period."""

    key: str
    label: str
    unit: Unit
    used: Figure
    limit: Figure | None  # None: unlimited

    @property
    def unlimited(self) -> bool:
        return self.limit is None

    @property
    def percent(self) -> int:
        """Share of the allowance used, 0-100 (a bar cannot go past full; `over` says so)."""
        if self.limit is None:
            return 0
        if not self.limit:
            return 100 if self.used else 0
        return min(int(self.used * 100 / self.limit), 100)

    @property
    def over(self) -> bool:
        return self.limit is not None and self.used > self.limit


@dataclass(frozen=True)
class BillingSummary:
    subscription: WorkspacePlan
    plan: Plan
    period_start: datetime
    period_end: datetime
    allowances: list[Allowance]
    interval: str | None  # "month" or "year" while subscribed
    # AI spend beyond what the plan includes, this period; None for plans that refuse it.
    overage_usd: Decimal | None


def billing_summary(*, access: Access) -> BillingSummary:
    """The workspace's plan, its period and every allowance with this period's figure. Call
    with the workspace's schema active. One query per meter."""
    access.require(Perm.BILLING_VIEW)
    row = workspace_plan(workspace=access.workspace)
    now = timezone.now()
    start, end = period_at(row, now)
    granted = granted_usd(workspace_id=access.workspace.pk, now=now)
    allowances = [
        Allowance(
            key=meter.key,
            label=meter.label,
            unit=meter.unit,
            used=meter.count(access.workspace.pk, start),
            limit=_with_credit(plan_limit(row.plan, meter.key), meter.key, granted),
        )
        for key in KEYS
        if (meter := _meters.get(key)) is not None
    ]
    overage = None
    if row.plan.allows_overage:
        spent = next((a.used for a in allowances if a.key == AI_SPEND), Decimal(0))
        overage = max(Decimal(spent) - row.plan.included_ai_spend_usd, Decimal(0))
    interval = subscription_interval(row.stripe_subscription_id)
    return BillingSummary(row, row.plan, start, end, allowances, interval, overage)


def _with_credit(limit: Figure | None, key: str, granted: Decimal) -> Figure | None:
    """Staff credit grants raise the AI-spend allowance (as the gateway counts it)."""
    return limit + granted if key == AI_SPEND and limit is not None else limit


def plans_offered() -> list[Plan]:
    """The plans a workspace can choose on the Billing page: the public ones."""
    return list(Plan.objects.filter(is_public=True))
