"""Plan allowances enforced before the work (issue 14). Our database decides; nothing waits on
Stripe. Off unless `BILLING_QUOTAS` (on by default when Stripe keys are configured).

    run_reserve(workspace_id=...)             # count one run start, or QuotaExceeded (402)
    workflow_room_require(workspace_id=...)
    storage_room_require(workspace_id=..., adding_bytes=n, filename=f)

The figures checked are the meters of billing.usage (the apps that own the rows count them),
the same the Billing page shows.

Call it inside the transaction that creates the run: the workspace's plan row is locked until
that transaction ends, so two starts at the last allowed run cannot both pass, and a start that
fails later gives its run back (the count rolls back with it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Subquery, Sum
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from billing import usage
from billing.models import CreditGrant, WorkspacePlan
from billing.plans import period_at, plan_start
from core.exceptions import ApplicationError
from core.formatting import cost_text
from core.hooks import MemberInviting
from notifications.kinds import Kind
from notifications.services import Event, notify_on_commit
from tenants.models import Workspace
from tenants.schemas import current_schema
from tenants.selectors import admin_ids


class QuotaExceeded(ApplicationError):
    """A plan allowance is used up: HTTP 402 with the standard error envelope."""

    code = "quota_exceeded"
    status = 402


def plan_row_locked(workspace_id: int, now: datetime) -> WorkspacePlan:
    """The workspace's plan row, locked until the caller's transaction ends, in its current
    period (a period that ended rolls forward and its counters start from zero)."""
    locked = WorkspacePlan.objects.select_for_update(of=("self",)).select_related("plan")
    row = locked.filter(workspace_id=workspace_id).first()
    if row is None:  # a workspace without a row gets one (on the default plan) first
        plan_start(workspace_id=workspace_id, now=now)
        row = locked.get(workspace_id=workspace_id)
    start, end = period_at(row, now)
    if start != row.current_period_start:  # a new period: its counters start from zero
        row.current_period_start, row.current_period_end = start, end
        row.runs_used = 0
    return row


def run_reserve(*, workspace_id: int | None) -> None:
    """Count one run start against the plan's runs per month; refuse it when the allowance is
    used up and the plan bills no overage, or when the workspace is read-only (a failed
    payment's grace period ended). `workspace_id` None: the workspace whose schema is
    active (triggers and schedules start runs without an access). Nothing happens while quotas
    are off."""
    if not settings.BILLING_QUOTAS:
        return
    if workspace_id is None:
        workspace_id = Workspace.objects.values_list("pk", flat=True).get(
            schema_name=current_schema()
        )
    now = timezone.now()
    with transaction.atomic():
        row = plan_row_locked(workspace_id, now)
        if row.status == WorkspacePlan.Status.READ_ONLY:
            raise QuotaExceeded(_paused_text(row, now))
        limit = row.plan.runs_per_month
        if limit is not None and row.runs_used >= limit and not row.plan.allows_overage:
            renews = date_format(timezone.localtime(row.current_period_end), "j M Y")
            raise QuotaExceeded(
                f"This workspace has used the {limit} runs its {row.plan.name} plan includes "
                f"this period ({row.runs_used} of {limit}; the count starts again on {renews}). "
                "An owner or admin can upgrade the plan on the Billing page to run more."
            )
        row.runs_used += 1
        row.save(
            update_fields=["runs_used", "current_period_start", "current_period_end", "updated_at"]
        )
        if limit:
            _warn_at_thresholds(row, used=row.runs_used, limit=limit)


# Owners and admins are notified when a run takes the period's count to these shares of the plan.
WARN_SHARES = (Decimal("0.8"), Decimal(1))


def _warn_at_thresholds(row: WorkspacePlan, *, used: int, limit: int) -> None:
    """Notify owners and admins, after commit, when this run reached 80 % or 100 % of the plan's
    runs (exactly once per threshold and period: the count passes each figure once)."""
    crossed = [share for share in WARN_SHARES if used == math.ceil(limit * share)]
    if not crossed:
        return
    share = int(crossed[-1] * 100)
    workspace = Workspace.objects.only("name", "slug").get(pk=row.workspace_id)
    recipients = admin_ids(workspace_id=row.workspace_id)
    if row.plan.allows_overage:
        then = "Runs beyond the allowance are billed as overage."
    elif share == 100:
        then = "Further runs are refused until the period ends or the plan is upgraded."
    else:
        then = "Upgrade the plan on the Billing page before runs are refused."
    renews = date_format(timezone.localtime(row.current_period_end), "j M Y")
    notify_on_commit(
        user_ids=recipients,
        event=Event(
            kind=Kind.USAGE_WARNING,
            dedupe_key=(
                f"quota:runs:{row.workspace_id}:{row.current_period_start.isoformat()}:{share}"
            ),
            title=f"{workspace.name} has used {share}% of its plan's runs",
            body=(
                f"{workspace.name} has started {used} of the {limit} runs its "
                f"{row.plan.name} plan includes this period (until {renews}). {then}"
            ),
            url=reverse("billing", kwargs={"workspace_slug": workspace.slug}),
            workspace_id=row.workspace_id,
        ),
    )


def _refusal(row: WorkspacePlan, what: str) -> QuotaExceeded:
    return QuotaExceeded(
        f"{what} An owner or admin can upgrade the plan ({row.plan.name} now) on the Billing page."
    )


def workflow_room_require(*, workspace_id: int) -> None:
    """Refuse a new workflow when the workspace already has as many active workflows as its
    plan allows. They are counted after the plan row is locked, so two creations at the limit
    cannot both pass. Call inside the creating transaction, in the workspace's schema."""
    if not settings.BILLING_QUOTAS:
        return
    row = plan_row_locked(workspace_id, timezone.now())
    limit = row.plan.workflows
    if limit is not None and (count := _count(usage.WORKFLOWS, row)) >= limit:
        raise _refusal(
            row, f"This workspace has {count} workflows, the most its {row.plan.name} plan allows."
        )


def storage_room_require(*, workspace_id: int, adding_bytes: int, filename: str) -> None:
    """Refuse an upload that would take the workspace's knowledge storage past its plan's
    allowance (counted after the plan row is locked). Call inside the storing transaction, in
    the workspace's schema."""
    if not settings.BILLING_QUOTAS:
        return
    row = plan_row_locked(workspace_id, timezone.now())
    if row.plan.knowledge_storage_mb is None:
        return
    limit = row.plan.knowledge_storage_mb * usage.MIB
    stored = _count(usage.KNOWLEDGE_STORAGE, row)
    if stored + adding_bytes > limit:
        raise _refusal(
            row,
            f"Storing “{filename}” ({_mb(adding_bytes)}) would bring this workspace's knowledge "
            f"to {_mb(stored + adding_bytes)}; its {row.plan.name} plan allows "
            f"{row.plan.knowledge_storage_mb} MB.",
        )


def _count(key: str, row: WorkspacePlan) -> int:
    return int(
        usage.meter_count(key, workspace_id=row.workspace_id, period_start=row.current_period_start)
    )


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


@dataclass(frozen=True)
class SpendAllowance:
    """The AI spend a workspace's plan includes this period. `capped`: the plan refuses spend
    past it (no overage). `paused`: why priced calls are refused outright (a read-only
    workspace, whose payment failed and grace ended), or empty."""

    plan_name: str
    included_usd: Decimal
    period_start: datetime
    period_end: datetime
    capped: bool = True
    paused: str = ""


def _paused_text(row: WorkspacePlan, now: datetime) -> str:
    failed = date_format(timezone.localtime(row.payment_failed_at or now), "j M Y")
    return (
        f"Runs are paused: the payment for this workspace's {row.plan.name} plan failed "
        f"on {failed} and its grace period has ended. Pages and exports still work and "
        "nothing is deleted; an owner can fix the card with Manage payment on the "
        "Billing page, and runs resume once the payment goes through."
    )


@dataclass(frozen=True)
class PlanView:
    """What the gateway needs of a workspace's plan around each priced model call, read in one
    query for the period that holds the moment it was read (`period_end`: stale after it). The
    gateway keeps it per process until a plan row, a plan or a credit grant changes
    (agents.gateway.config_cache)."""

    workspace_id: int
    plan_name: str
    included_usd: Decimal  # the plan's included AI spend plus the period's credit grants
    allows_overage: bool
    period_start: datetime
    period_end: datetime
    paused: str  # why priced calls are refused (read-only), or empty
    metered_customer: str  # the Stripe customer whose AI spend is metered (overage plans)
    warned_period: datetime | None
    warned_percent: int


def plan_view(*, schema_name: str) -> PlanView | None:
    """The plan view of the workspace in `schema_name` now (None: no such workspace)."""
    now = timezone.now()
    row = (
        WorkspacePlan.objects.select_related("plan")
        .annotate(granted_usd=_granted_usd(now))
        .filter(workspace__schema_name=schema_name)
        .first()
    )
    if row is None:
        workspace = Workspace.objects.filter(schema_name=schema_name).first()
        if workspace is None:
            return None
        plan_start(workspace_id=workspace.pk)
        return plan_view(schema_name=schema_name)
    plan = row.plan
    start, end = period_at(row, now)
    return PlanView(
        workspace_id=row.workspace_id,
        plan_name=plan.name,
        included_usd=plan.included_ai_spend_usd + (row.granted_usd or Decimal(0)),
        allows_overage=plan.allows_overage,
        period_start=start,
        period_end=end,
        paused=_paused_text(row, now) if row.status == WorkspacePlan.Status.READ_ONLY else "",
        metered_customer=row.stripe_customer_id if plan.allows_overage else "",
        warned_period=row.ai_spend_warned_period,
        warned_percent=row.ai_spend_warned_percent,
    )


def ai_spend_allowance(view: PlanView | None) -> SpendAllowance | None:
    """What the workspace's plan includes, for the gateway to check a model call against (it
    owns the ledger). None: quotas are off, or the plan bills overage and the workspace is not
    read-only (then priced calls are refused: `paused`). No lock: the gateway reserves the most
    a call could cost, like the monthly budget."""
    if not settings.BILLING_QUOTAS or view is None:
        return None
    if view.allows_overage and not view.paused:
        return None
    return SpendAllowance(
        view.plan_name,
        view.included_usd,
        view.period_start,
        view.period_end,
        capped=not view.allows_overage,
        paused=view.paused,
    )


# How every refusal of a model call for money begins (here and in agents.gateway.budgets):
# the embedded chat tells a visitor the chat reached its limit instead of the workspace's figures.
REFUSAL_PREFIX = "Refused before calling"


def ai_spend_refusal_text(
    allowance: SpendAllowance, *, call: str, worst: Decimal, spent: Decimal
) -> str:
    """Why the gateway refuses `call`: it raises this as its BudgetExceeded, which carries what
    the run or turn had spent before the refusal onto it."""
    left = max(allowance.included_usd - spent, Decimal(0))
    renews = date_format(timezone.localtime(allowance.period_end), "j M Y")
    return (
        f"{REFUSAL_PREFIX} {call}: it could cost up to {cost_text(worst)}, and this "
        f"workspace has {cost_text(left)} left of the {cost_text(allowance.included_usd)} of AI "
        f"spend its {allowance.plan_name} plan includes until {renews}. An owner or admin can "
        "upgrade the plan on the Billing page."
    )


def seats_room_require(event: MemberInviting) -> None:
    """`core.hooks.member_inviting` check: refuse an invitation when members and pending
    invitations already fill the plan's seats (counted after the plan row is locked)."""
    if not settings.BILLING_QUOTAS:
        return
    row = plan_row_locked(event.workspace_id, timezone.now())
    seats = row.plan.seats
    if seats is None:
        return
    members, pending = usage.seats_taken(event.workspace_id)
    if members + pending >= seats:
        raise _refusal(
            row,
            f"This workspace has {members} members and {pending} pending invitations; its "
            f"{row.plan.name} plan includes {seats} seats.",
        )


def ai_spend_warn(view: PlanView | None, *, spend_since: Callable[[datetime], Decimal]) -> None:
    """After a priced model call: notify owners and admins, after commit, once per period when
    the workspace's AI spend (`spend_since(period start)`, as the gateway counts it) reaches
    80 % and 100 % of what its plan includes. On a plan that allows overage the 100 % mail says
    further spend is billed as overage. What was mailed is remembered on the plan row
    (`ai_spend_warned_period`, `ai_spend_warned_percent`), and checked again under its lock: a
    stale `view` costs a spend read, never a second mail."""
    if not settings.BILLING_QUOTAS or view is None or view.included_usd <= 0:
        return
    included, start, end = view.included_usd, view.period_start, view.period_end
    if view.warned_period == start and view.warned_percent >= 100:
        return  # both mails went out this period: no ledger read
    spent = spend_since(start)
    crossed = [share for share in WARN_SHARES if spent >= included * share]
    if not crossed:
        return
    share = int(crossed[-1] * 100)
    with transaction.atomic():
        locked = (
            WorkspacePlan.objects.select_for_update(of=("self",))
            .select_related("plan")
            .get(workspace_id=view.workspace_id)
        )
        already = locked.ai_spend_warned_percent if locked.ai_spend_warned_period == start else 0
        if share <= already:
            return
        locked.ai_spend_warned_period, locked.ai_spend_warned_percent = start, share
        locked.save(
            update_fields=["ai_spend_warned_period", "ai_spend_warned_percent", "updated_at"]
        )
        _notify_ai_spend(locked, share=share, spent=spent, included=included, period_end=end)


def _granted_usd(now: datetime) -> Subquery:
    """For annotating plan rows: staff credit grants (billing.backoffice.credit_grant) for the
    period that holds `now`, in the same query (this runs around every priced call)."""
    return Subquery(
        CreditGrant.objects.filter(
            workspace_id=OuterRef("workspace_id"), period_start__lte=now, period_end__gt=now
        )
        .values("workspace_id")
        .annotate(total=Sum("amount_usd"))
        .values("total")
    )


def _notify_ai_spend(
    row: WorkspacePlan, *, share: int, spent: Decimal, included: Decimal, period_end: datetime
) -> None:
    workspace = Workspace.objects.only("name", "slug").get(pk=row.workspace_id)
    if row.plan.allows_overage:
        then = (
            "Further AI spend this period is billed as overage, at model cost, on the next invoice."
            if share == 100
            else "AI spend beyond the allowance will be billed as overage."
        )
    elif share == 100:
        then = (
            "Model calls that could cost more are refused until the period ends or the plan is "
            "upgraded on the Billing page."
        )
    else:
        then = "Upgrade the plan on the Billing page before model calls are refused."
    renews = date_format(timezone.localtime(period_end), "j M Y")
    period = row.ai_spend_warned_period.isoformat() if row.ai_spend_warned_period else ""
    notify_on_commit(
        user_ids=admin_ids(workspace_id=row.workspace_id),
        event=Event(
            kind=Kind.USAGE_WARNING,
            dedupe_key=f"quota:ai_spend:{row.workspace_id}:{period}:{share}",
            title=f"{workspace.name} has used {share}% of its plan's AI spend",
            body=(
                f"{workspace.name} has spent {cost_text(spent)} of the {cost_text(included)} of "
                f"AI spend its {row.plan.name} plan includes this period (until {renews}). {then}"
            ),
            url=reverse("billing", kwargs={"workspace_slug": workspace.slug}),
            workspace_id=row.workspace_id,
        ),
    )
