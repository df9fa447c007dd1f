"""What staff do to a workspace's plan from the admin (issue 14, back-office).

    credit_grant(workspace_id=.., amount_usd=Decimal("5"), reason="..", by=staff)
    trial_extend(workspace_id=.., days=7, reason="..", by=staff)
    plan_comp(workspace_id=.., plan=pro, until=date or None, reason="..", by=staff)
    comps_expire()                          # comps whose end passed fall back to the default plan
    webhook_trigger_replay(trigger=..)      # process a received Stripe webhook again

Each staff action validates its input (`ValidationFailed` naming the field), changes the plan
row while holding its lock, and writes an audit event to the workspace's log naming the staff
user, the reason, and the old and new values, all in one transaction: an action is either
done and audited, or neither.
"""

from __future__ import annotations

import traceback
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone
from djstripe.models import Event, WebhookEventTrigger

from accounts.models import User
from billing.models import CreditGrant, Plan, WorkspacePlan
from billing.plans import default_plan, granted_usd
from billing.quotas import plan_row_locked
from billing.webhooks import webhook_trigger_enqueue
from core.exceptions import ValidationFailed
from tenants import audit
from tenants.models import Workspace

MAX_GRANT_USD = Decimal("10000.00")
MAX_TRIAL_DAYS = 365
REASON_MAX = 240
# What `plan_row_locked` may have rolled forward: saved with each change.
_PERIOD_FIELDS = ["runs_used", "current_period_start", "current_period_end", "updated_at"]


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, fields={field: [message]})


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise _invalid("reason", "Reason: say why (it is kept in the workspace's audit log).")
    if len(reason) > REASON_MAX:
        raise _invalid("reason", f"Reason: at most {REASON_MAX} characters ({len(reason)} now).")
    return reason


def _locked_in_period(workspace_id: int, now: datetime) -> WorkspacePlan:
    """The plan row, locked, with a period that ended rolled forward and saved."""
    row = plan_row_locked(workspace_id, now)
    row.save(update_fields=_PERIOD_FIELDS)
    return row


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _record(*, action: str, row: WorkspacePlan, by: User | None, metadata: dict[str, Any]) -> None:
    workspace = Workspace.objects.get(pk=row.workspace_id)
    audit.record(
        action=action,
        actor=by,
        workspace=workspace,
        target=row,
        target_label=f"{workspace.name} billing",
        metadata={"via": "admin", **metadata},
    )


@transaction.atomic
def credit_grant(*, workspace_id: int, amount_usd: Decimal, reason: str, by: User) -> CreditGrant:
    """Add `amount_usd` of AI spend to the workspace's allowance for its current period."""
    if not Decimal("0.01") <= amount_usd <= MAX_GRANT_USD or amount_usd != round(amount_usd, 2):
        raise _invalid(
            "amount_usd",
            f"Amount: enter dollars between $0.01 and ${MAX_GRANT_USD:,} with at most two "
            f"decimals (got {amount_usd}).",
        )
    reason = _reason(reason)
    now = timezone.now()
    row = _locked_in_period(workspace_id, now)
    if row.plan.allows_overage:
        raise _invalid(
            "amount_usd",
            f"The {row.plan.name} plan bills AI spend past its allowance as overage, so a credit "
            "would not change what it may spend. Refund or credit the customer in Stripe instead.",
        )
    before = row.plan.included_ai_spend_usd + granted_usd(workspace_id=workspace_id, now=now)
    grant = CreditGrant.objects.create(
        workspace_id=workspace_id,
        amount_usd=amount_usd,
        reason=reason,
        granted_by=by,
        period_start=row.current_period_start,
        period_end=row.current_period_end,
    )
    _record(
        action=audit.Action.CREDIT_GRANTED,
        row=row,
        by=by,
        metadata={
            "reason": reason,
            "amount_usd": str(amount_usd),
            "period_start": _iso(row.current_period_start),
            "period_end": _iso(row.current_period_end),
            "old": {"ai_spend_allowance_usd": str(before)},
            "new": {"ai_spend_allowance_usd": str(before + amount_usd)},
        },
    )
    return grant


def _subscribed(row: WorkspacePlan) -> bool:
    return bool(row.stripe_subscription_id)  # cleared when the subscription ends


@transaction.atomic
def trial_extend(*, workspace_id: int, days: int, reason: str, by: User) -> WorkspacePlan:
    """Move the trial's end `days` later (from now when it has ended or there was none); the
    workspace is trialing afterwards. A workspace paying through a Stripe subscription is
    refused: its trial is Stripe's."""
    if not 1 <= days <= MAX_TRIAL_DAYS:
        raise _invalid("days", f"Days: enter a whole number from 1 to {MAX_TRIAL_DAYS}.")
    reason = _reason(reason)
    now = timezone.now()
    row = _locked_in_period(workspace_id, now)
    if _subscribed(row):
        raise ValidationFailed(
            f"This workspace pays through Stripe subscription {row.stripe_subscription_id}; "
            "change its trial in Stripe instead."
        )
    old = {"status": row.status, "trial_ends_at": _iso(row.trial_ends_at)}
    start = max(row.trial_ends_at or now, now)
    row.trial_ends_at = start + timedelta(days=days)
    row.status = WorkspacePlan.Status.TRIALING
    row.save(update_fields=["trial_ends_at", "status", "updated_at"])
    _record(
        action=audit.Action.TRIAL_EXTENDED,
        row=row,
        by=by,
        metadata={
            "reason": reason,
            "days": days,
            "old": old,
            "new": {"status": row.status, "trial_ends_at": _iso(row.trial_ends_at)},
        },
    )
    return row


def comp_end(until: date) -> datetime:
    """A comp "until 31 January" lasts through that day (the admin's time zone)."""
    return timezone.make_aware(datetime.combine(until + timedelta(days=1), time.min))


def _plan_state(row: WorkspacePlan) -> dict[str, Any]:
    return {
        "plan": row.plan.key,
        "status": row.status,
        "comped": row.comped,
        "comp_ends_at": _iso(row.comp_ends_at),
        "trial_ends_at": _iso(row.trial_ends_at),
    }


@transaction.atomic
def plan_comp(
    *, workspace_id: int, plan: Plan, until: date | None, reason: str, by: User
) -> WorkspacePlan:
    """Put the workspace on `plan` without a subscription, through the day `until` (None:
    indefinitely); then `comps_expire` puts it back on the default plan. A workspace paying
    through a Stripe subscription is refused (cancel that first)."""
    reason = _reason(reason)
    now = timezone.now()
    ends = comp_end(until) if until is not None else None
    if ends is not None and ends <= now:
        raise _invalid("until", "Until: choose today or a later day, or leave it empty.")
    row = _locked_in_period(workspace_id, now)
    if _subscribed(row):
        raise ValidationFailed(
            f"This workspace pays through Stripe subscription {row.stripe_subscription_id}; "
            "cancel it before comping a plan."
        )
    old = _plan_state(row)
    row.plan = plan
    row.status = WorkspacePlan.Status.ACTIVE
    row.trial_ends_at = None
    row.comped = True
    row.comp_ends_at = ends
    row.cancel_at_period_end = False
    row.grace_ends_at = None
    row.save(
        update_fields=[
            "plan",
            "status",
            "trial_ends_at",
            "comped",
            "comp_ends_at",
            "cancel_at_period_end",
            "grace_ends_at",
            "updated_at",
        ]
    )
    _record(
        action=audit.Action.PLAN_COMPED,
        row=row,
        by=by,
        metadata={"reason": reason, "old": old, "new": _plan_state(row)},
    )
    return row


def comps_expire(*, now: datetime | None = None) -> int:
    """Comped plans whose end has passed fall back to the default plan (audited, no actor); a
    workspace that subscribed meanwhile keeps the plan it pays for. Returns how many ended.
    Safe to run concurrently: each row is re-checked under its lock."""
    now = now or timezone.now()
    ended = 0
    due = WorkspacePlan.objects.filter(comped=True, comp_ends_at__lte=now)
    for workspace_id in due.values_list("workspace_id", flat=True):
        with transaction.atomic():
            row = plan_row_locked(workspace_id, now)
            if not row.comped or row.comp_ends_at is None or row.comp_ends_at > now:
                continue
            old = _plan_state(row)
            subscribed = _subscribed(row)
            if not subscribed:  # a subscription taken meanwhile keeps the plan it pays for
                row.plan = default_plan()
            row.comped = False
            row.comp_ends_at = None
            row.save(update_fields=[*_PERIOD_FIELDS, "plan", "comped", "comp_ends_at"])
            reason = "the comp's end date passed"
            if subscribed:
                reason += " (the workspace subscribed meanwhile)"
            _record(
                action=audit.Action.COMP_ENDED,
                row=row,
                by=None,
                metadata={
                    "reason": reason,
                    "old": old,
                    "new": _plan_state(row),
                },
            )
            ended += 1
    return ended


def webhook_trigger_replay(*, trigger: WebhookEventTrigger) -> Event | None:
    """Process a received Stripe webhook again. Its Event stored already: run its handlers
    again now (they are idempotent; the subscription is synced here). Not stored: queued for
    the workers, as a delivery is (billing/webhooks.py; None: the Event comes later). The trigger
    records the outcome (processed, or the exception and its traceback). A trigger whose
    signature failed is refused: its body is not trusted."""
    if not trigger.valid:
        raise ValidationFailed(
            f"Webhook {trigger.pk} failed signature validation; its body is not trusted and "
            "cannot be replayed. Resend the event from Stripe instead."
        )
    trigger.exception = ""
    trigger.traceback = ""
    fields = ["processed", "exception", "traceback", "event"]
    event = Event.objects.filter(id=trigger.json_body.get("id")).first()
    if event is None:
        # Saved before it is queued: a worker may take it as soon as this commits.
        with transaction.atomic():
            trigger.processed = False
            trigger.save(update_fields=fields)
            webhook_trigger_enqueue(trigger)
        return None
    try:
        with transaction.atomic():
            event.invoke_webhook_handlers()
            trigger.event, trigger.processed = event, True
    except Exception as exc:
        trigger.processed = False
        trigger.exception = str(exc)[:128]
        trigger.traceback = traceback.format_exc()
        trigger.save(update_fields=fields)
        raise
    trigger.save(update_fields=fields)
    return trigger.event
