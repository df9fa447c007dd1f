"""Billing's Celery tasks (periodic ones are in CELERY_BEAT_SCHEDULE, config/settings/base.py).
Beat sends them without a workspace: they run in the public schema, where the plan rows and
the meter outbox live."""

from __future__ import annotations

from celery import shared_task

from billing.backoffice import comps_expire
from billing.meter import meter_flush
from billing.stripe_client import secret_key, stripe_client
from billing.stripe_mirror import MIRROR_TASK, mirror_drain
from billing.subscription_state import grace_expire
from billing.webhooks import PROCESS_TASK, webhooks_drain
from core import recovery


@shared_task(  # type: ignore[untyped-decorator, unused-ignore]
    name="billing.expire_grace", max_retries=0, ignore_result=True
)
def expire_grace() -> int:
    """Workspaces whose grace period after a failed payment has ended become read-only for
    runs. Idempotent (a row already read-only, or paid meanwhile, is left alone); a missed
    tick is made up by the next one."""
    return grace_expire()


@shared_task(name="billing.flush_meter", max_retries=0)  # type: ignore[untyped-decorator, unused-ignore]
def flush_meter() -> int:
    """Send the due meter outbox rows to Stripe; returns how many were sent. Nothing to do
    while billing is off. Safe to overlap with itself (rows are claimed with SKIP LOCKED) and
    to be killed (a row is sent again with the same identifier; Stripe counts it once)."""
    if not secret_key():
        return 0
    return meter_flush(stripe_client()).sent


@shared_task(  # type: ignore[untyped-decorator, unused-ignore]
    name="billing.expire_comps", max_retries=0, ignore_result=True
)
def expire_comps() -> int:
    """Comped plans whose last day has passed fall back to the default plan (audited).
    Idempotent: each row is re-checked under its lock; a missed tick is made up by the next."""
    return comps_expire()


@shared_task(  # type: ignore[untyped-decorator, unused-ignore]
    name=PROCESS_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    **recovery.DATABASE_RETRY,
)
def process_webhooks(trigger_id: int | None = None) -> int:
    """Process the Stripe webhooks received and not yet processed, batch after batch, until
    none is left; returns how many were taken. Queued by the webhook view for each delivery
    (`trigger_id`) and by beat every minute without one (the sweep: a delivery whose message
    was lost, a failed one whose backoff passed). At-least-once: a duplicate or redelivered
    message finds nothing left, or takes what is due; losing the database retries it."""
    taken = 0
    while claimed := webhooks_drain().claimed:
        taken += claimed
    return taken


@shared_task(  # type: ignore[untyped-decorator, unused-ignore]
    name=MIRROR_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    **recovery.DATABASE_RETRY,
)
def mirror_stripe() -> int:
    """Refresh dj-stripe's mirror of the Stripe objects webhooks changed (billing/
    stripe_mirror.py), batch after batch until none is due; returns how many were taken.
    Queued a few seconds after the webhooks that owe it, and swept by beat."""
    taken = 0
    while claimed := mirror_drain():
        taken += claimed
    return taken
