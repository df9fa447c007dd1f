"""The marketplace's Celery tasks (periodic ones in CELERY_BEAT_SCHEDULE, config/settings/base.py).
Sent without a workspace: they run in the public schema, where purchases and charges live."""

from __future__ import annotations

from celery import shared_task

from billing.stripe_client import secret_key, stripe_client
from marketplace.purchases import FLUSH_TASK, run_charges_flush


@shared_task(name=FLUSH_TASK, max_retries=0)  # type: ignore[untyped-decorator, unused-ignore]
def flush_run_charges() -> int:
    """Send due per-run charges to Stripe as invoice items; returns how many were sent.
    Enqueued when a charge is recorded and every minute (retries). Safe to overlap (rows are
    claimed with SKIP LOCKED) and to be killed (resent with the same idempotency key)."""
    if not secret_key():
        return 0
    return run_charges_flush(stripe_client())
