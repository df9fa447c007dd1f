"""Metered overage through Stripe Billing Meters (issue 14, docs/billing.md "Metered overage").

    ledger_cost_recorded(schema_name=..., ledger_id=..., cost_usd=..., occurred_at=...,
                         metered=metered_customer(schema_name=...))
    meter_flush(client)                  # send due outbox rows (periodic task, a command)
    meter_retry(ids=[...])               # failed rows back to pending (the admin's action)
    reconcile(client, start=.., end=..)  # Stripe's meter totals against our ledger

Invariant: every priced ledger row of a workspace with a Stripe customer on a plan that allows
overage has exactly one `MeterOutbox` row, written in the transaction that records the row's
cost, so the two exist together or not at all. The outbox row's id is the meter event's
`identifier` and idempotency key: Stripe counts a row once however often it is sent.

AI spend is metered in whole micro-dollars of model cost (the ledger's own precision: costs
have six decimal places, so the conversion is exact). Runs over the allowance are not metered:
an overage plan bills the AI spend past what it includes, and a run costs us only its model
calls (decision recorded in docs/decisions.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import stripe
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min, Sum
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from billing.models import MeterOutbox, WorkspacePlan
from billing.stripe_client import secret_key
from core.exceptions import ValidationFailed
from tenants.schemas import each_live_workspace

logger = logging.getLogger(__name__)

AI_SPEND_EVENT = "ai_spend_micro_usd"
AI_SPEND_METER_NAME = "AI spend (micro-dollars of model cost)"
CUSTOMER_KEY = "stripe_customer_id"
MICRO = Decimal(1_000_000)

# Stripe accepts meter events up to 35 days old; a row older than this (minus a margin for the
# request on its way) can never be billed through the meter.
STRIPE_MAX_EVENT_AGE = timedelta(days=35) - timedelta(minutes=5)
MAX_RETRY_DELAY = timedelta(hours=1)
OUTCOME_FIELDS = ["status", "attempts", "next_attempt_at", "last_error", "sent_at", "updated_at"]


def micro_usd(cost: Decimal) -> int:
    """Dollars of model cost in whole micro-dollars (exact for the ledger's 6 decimals)."""
    return int((cost * MICRO).to_integral_value())


def metered_customer(*, schema_name: str) -> tuple[int, str] | None:
    """(workspace id, Stripe customer) when the workspace's AI spend is metered: billing is on
    and it has a customer on a plan that allows overage. None otherwise (billing off: no
    query). The gateway reads the same from its cached plan view."""
    if not secret_key():
        return None
    found = (
        WorkspacePlan.objects.filter(workspace__schema_name=schema_name, plan__allows_overage=True)
        .exclude(stripe_customer_id="")
        .values_list("workspace_id", "stripe_customer_id")
        .first()
    )
    return None if found is None else (found[0], found[1])


def ledger_cost_recorded(
    *,
    schema_name: str,
    ledger_id: int,
    cost_usd: Decimal,
    occurred_at: Callable[[], datetime],
    metered: tuple[int, str] | None,
) -> MeterOutbox | None:
    """Queue the AI-spend meter event of ledger row `ledger_id` (in `schema_name`) when it is
    billable: a cost above zero, and `metered` (`metered_customer()`, read before the
    transaction). Call inside the transaction that records the cost. `occurred_at` gives the
    ledger row's time; it is read only for a billable row."""
    if cost_usd <= 0 or metered is None or not secret_key():
        return None
    workspace_id, customer_id = metered
    return MeterOutbox.objects.create(
        workspace_id=workspace_id,
        event_name=AI_SPEND_EVENT,
        value=micro_usd(cost_usd),
        stripe_customer_id=customer_id,
        ledger_schema=schema_name,
        ledger_id=ledger_id,
        occurred_at=occurred_at(),
    )


@dataclass
class FlushReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def retry_at(attempts: int, now: datetime) -> datetime:
    delay = timedelta(seconds=settings.METER_RETRY_BASE_SECONDS * 2 ** (attempts - 1))
    return now + min(delay, MAX_RETRY_DELAY)


def permanent_refusal(exc: stripe.StripeError) -> bool:
    """A refusal that sending again will not change: Stripe's 4xx on the request itself.
    Authentication, rate limits, conflicts, 5xx and network failures are worth retrying, and
    so is a timestamp ahead of Stripe's clock (ours runs fast: later it is not)."""
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError | stripe.RateLimitError):
        return False
    if exc.code == "timestamp_in_future":
        return False
    status = exc.http_status
    return status is not None and 400 <= status < 500 and status not in (409, 429)


def _already_counted(exc: stripe.StripeError) -> bool:
    """Stripe already holds an event with this identifier (sent by a flusher that died before
    marking the row; its idempotency key has expired or the request differed)."""
    return exc.code == "resource_already_exists" and (exc.error and exc.error.param) == "identifier"


def _send(client: stripe.StripeClient, row: MeterOutbox) -> None:
    """The parameters depend on the row alone, so a resend under the same idempotency key is
    the same request (another one would be refused as an idempotency error)."""
    client.v1.billing.meter_events.create(
        params={
            "event_name": row.event_name,
            "identifier": row.identifier,
            "timestamp": int(row.occurred_at.timestamp()),
            "payload": {CUSTOMER_KEY: row.stripe_customer_id, "value": str(row.value)},
        },
        options={"idempotency_key": row.identifier},
    )


def _attempt(client: stripe.StripeClient, row: MeterOutbox, report: FlushReport) -> bool:
    """Send one row and record the outcome on it (not saved). False: stop the batch (Stripe
    is unreachable or failing; the other rows wait untouched for the next flush)."""
    now = timezone.now()
    row.attempts += 1
    row.updated_at = now  # bulk_update does not apply auto_now
    if row.occurred_at < now - STRIPE_MAX_EVENT_AGE:
        row.status, row.last_error = (
            MeterOutbox.Status.FAILED,
            (
                "Not sent: Stripe accepts meter events from the past 35 days only, and this ledger "
                f"row is from {row.occurred_at:%Y-%m-%d}. Bill or credit it by hand; "
                "billing_reconcile shows it as a difference."
            ),
        )
        report.failed += 1
        return True
    try:
        _send(client, row)
    except stripe.StripeError as exc:
        message = f"Stripe ({exc.http_status or 'no answer'}): {exc.user_message or exc}"[:500]
        if _already_counted(exc):
            row.status, row.sent_at, row.last_error = MeterOutbox.Status.SENT, now, ""
            report.sent += 1
            return True
        row.last_error = message
        report.errors.append(f"{row.identifier}: {message}")
        if permanent_refusal(exc) or row.attempts >= settings.METER_MAX_ATTEMPTS:
            row.status = MeterOutbox.Status.FAILED
            report.failed += 1
            return True
        row.next_attempt_at = retry_at(row.attempts, now)
        report.retrying += 1
        return False
    row.status, row.sent_at, row.last_error = MeterOutbox.Status.SENT, now, ""
    report.sent += 1
    return True


def meter_flush(client: stripe.StripeClient, *, batch_size: int | None = None) -> FlushReport:
    """Send due outbox rows to Stripe, `batch_size` (METER_FLUSH_BATCH_SIZE) at a time, until
    none is due or a batch stops on a failure worth retrying.

    Each batch is claimed with SELECT … FOR UPDATE SKIP LOCKED and held until its outcomes
    are committed, so concurrent flushers never send the same row at the same time. A flusher
    killed mid-batch commits nothing: its rows are sent again by the next flush, with the same
    identifier and idempotency key, and Stripe counts them once (at-least-once delivery,
    exactly-once counting)."""
    size = batch_size or settings.METER_FLUSH_BATCH_SIZE
    report = FlushReport()
    while True:
        with transaction.atomic():
            rows = list(
                MeterOutbox.objects.select_for_update(skip_locked=True)
                .filter(status=MeterOutbox.Status.PENDING, next_attempt_at__lte=timezone.now())
                .order_by("id")[:size]
            )
            done: list[MeterOutbox] = []
            go_on = True
            for row in rows:
                go_on = _attempt(client, row, report)
                done.append(row)
                if not go_on:
                    break
            if done:
                MeterOutbox.objects.bulk_update(done, OUTCOME_FIELDS)
        if not go_on or len(rows) < size:
            break
    if report.errors:
        logger.warning("meter flush: %s", "; ".join(report.errors[:10]))
    return report


def meter_retry(*, ids: Iterable[int]) -> int:
    """Put failed outbox rows back in the queue, due now with a fresh count of attempts (after
    the cause was fixed: a customer id, a meter, a key). Returns how many."""
    return MeterOutbox.objects.filter(pk__in=list(ids), status=MeterOutbox.Status.FAILED).update(
        status=MeterOutbox.Status.PENDING,
        attempts=0,
        next_attempt_at=timezone.now(),
        updated_at=timezone.now(),
    )


def meter_find(client: stripe.StripeClient, event_name: str) -> stripe.billing.Meter | None:
    """The active Stripe meter of `event_name`, if `billing_sync_plans` created it."""
    for meter in client.v1.billing.meters.list(params={"limit": 100}).data:
        if meter.event_name == event_name and meter.status == "active":
            return meter
    return None


# The ledger lives in agents (a higher layer): it registers how to read a workspace's model
# cost between two times, in the active schema (AgentsConfig.ready).
LedgerSpend = Callable[[datetime, datetime], Decimal]
_ledger_spend: list[LedgerSpend] = []


def ledger_spend_register(spend: LedgerSpend) -> None:
    _ledger_spend[:] = [spend]


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """`YYYY-MM` → its first instant and the next month's (UTC), or ValidationFailed."""
    try:
        start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ValidationFailed(
            f"--period must be a month as YYYY-MM (e.g. {timezone.now():%Y-%m}), not {period!r}."
        ) from None
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else None
    return start, end or start.replace(month=start.month + 1)


@dataclass(frozen=True)
class ReconcileLine:
    """One workspace's period, in micro-dollars: our ledger's billable model cost (since the
    period began, or since its subscription began when that was later: spend before an
    upgrade to a plan with overage was never billable), what Stripe's meter summed, and what
    our outbox has not sent yet (pending or failed)."""

    workspace: str
    customer: str
    ours: int
    stripe: int
    unsent: int

    @property
    def difference(self) -> int:
        return self.ours - self.stripe


def reconcile(
    client: stripe.StripeClient,
    *,
    start: datetime,
    end: datetime,
    workspace_slug: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[ReconcileLine]:
    """Compare, per workspace with a Stripe customer on a plan that allows overage, Stripe's
    AI-spend meter summary for [start, end) with the workspace's ledger (priced rows by their
    time, the time each meter event carries, from its subscription's start when that is later
    than `start`). Zero difference is expected once the outbox has
    sent everything; `progress(done, total)` is called after each workspace."""
    meter = meter_find(client, AI_SPEND_EVENT)
    if meter is None:
        raise ValidationFailed(
            f"Stripe has no active meter for {AI_SPEND_EVENT}: run manage.py billing_sync_plans."
        )
    rows = (
        WorkspacePlan.objects.select_related("workspace")
        .filter(plan__allows_overage=True)
        .exclude(stripe_customer_id="")
        .order_by("workspace__slug")
    )
    if workspace_slug is not None:
        rows = rows.filter(workspace__slug=workspace_slug)
        if not rows.exists():
            raise ValidationFailed(
                f"No workspace {workspace_slug!r} with a Stripe customer on a plan that allows "
                "overage (only those are metered)."
            )
    plans = list(rows)
    customers = {row.workspace_id: row.stripe_customer_id for row in plans}
    metered_since = {
        row.workspace_id: max(start, row.stripe_subscription_created or start) for row in plans
    }
    lines: list[ReconcileLine] = []
    for done, workspace in enumerate(each_live_workspace([row.workspace for row in plans]), 1):
        customer = customers[workspace.pk]
        summaries = client.v1.billing.meters.event_summaries.list(
            meter.id,
            params={
                "customer": customer,
                "start_time": int(start.timestamp()),
                "end_time": int(end.timestamp()),
            },
        )
        unsent = (
            MeterOutbox.objects.filter(
                workspace_id=workspace.pk, occurred_at__gte=start, occurred_at__lt=end
            )
            .exclude(status=MeterOutbox.Status.SENT)
            .aggregate(total=Sum("value"))["total"]
        )
        lines.append(
            ReconcileLine(
                workspace=workspace.slug,
                customer=customer,
                ours=micro_usd(_ledger_spend[0](min(metered_since[workspace.pk], end), end)),
                stripe=sum(int(summary.aggregated_value) for summary in summaries.data),
                unsent=unsent or 0,
            )
        )
        if progress is not None:
            progress(done, len(plans))
    return lines


def outbox_metrics() -> Iterable[Metric]:
    """Scrape-time figures of the outbox (core/metrics.py; BillingConfig.ready registers it):
    rows by status and the age of the oldest row waiting to be sent, the lag between a
    recorded cost and Stripe hearing of it. One indexed aggregate query, public schema."""
    now = timezone.now()
    waiting = [MeterOutbox.Status.PENDING, MeterOutbox.Status.FAILED]  # `sent` only grows
    by_status = dict(
        MeterOutbox.objects.filter(status__in=waiting)
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    oldest = MeterOutbox.objects.filter(status=MeterOutbox.Status.PENDING).aggregate(
        oldest=Min("created_at")
    )["oldest"]
    rows = GaugeMetricFamily(
        "agentmarket_billing_outbox_rows",
        "Meter outbox rows not sent, by status (pending: to retry; failed: given up).",
        labels=["status"],
    )
    for status in waiting:
        rows.add_metric([status], by_status.get(status, 0))
    yield rows
    yield GaugeMetricFamily(
        "agentmarket_billing_outbox_lag_seconds",
        "Age of the oldest pending meter outbox row (0 when none is pending).",
        value=max((now - oldest).total_seconds(), 0) if oldest is not None else 0,
    )
