"""The marketplace's Celery tasks (periodic ones in CELERY_BEAT_SCHEDULE, config/settings/base.py).
Sent without a workspace: they run in the public schema, where purchases and charges live."""

from __future__ import annotations

from celery import shared_task

from billing.stripe_client import secret_key, stripe_client
from marketplace.auto_upgrade import auto_upgrade_sweep
from marketplace.earnings import earnings_release
from marketplace.payouts import payouts_run
from marketplace.purchases import (
    FLUSH_TASK,
    run_charges_flush,
    run_charges_invoice,
    run_charges_reconcile,
)
from marketplace.services import AUTO_UPGRADE_TASK


@shared_task(name=FLUSH_TASK, max_retries=0)  # type: ignore[untyped-decorator, unused-ignore]
def flush_run_charges() -> int:
    """Send due per-run charges to Stripe as invoice items; returns how many were sent.
    Enqueued when a charge is recorded and every minute (retries). Safe to overlap (rows are
    claimed with SKIP LOCKED) and to be killed (resent with the same idempotency key)."""
    if not secret_key():
        return 0
    return run_charges_flush(stripe_client())


@shared_task(  # type: ignore[untyped-decorator, unused-ignore]
    name="marketplace.invoice_run_charges", max_retries=0, ignore_result=True
)
def invoice_run_charges() -> int:
    """Hourly: a standalone invoice for the due per-run charges of each workspace without a
    subscription; returns how many were made. At-least-once is safe: overlapping or killed
    runs invoice each charge once (marketplace/purchases.py `run_charges_invoice`). Nothing
    while billing is off."""
    if not secret_key():
        return 0
    return run_charges_invoice(stripe_client())


@shared_task(  # type: ignore[untyped-decorator, unused-ignore]
    name="marketplace.reconcile_run_charges", max_retries=0, ignore_result=True
)
def reconcile_run_charges() -> int:
    """Hourly: record the per-run charges of succeeded runs whose run_finished hook was never
    heard (a worker lost between the run's commit and the hook, a failing hook); returns how
    many (logged as a warning when any). Safe to overlap or repeat: one charge per purchase and
    run (marketplace/purchases.py `run_charges_reconcile`). Nothing while billing is off."""
    return run_charges_reconcile()


@shared_task(  # type: ignore[untyped-decorator, unused-ignore]
    name="marketplace.release_earnings", max_retries=0, ignore_result=True
)
def release_earnings() -> int:
    """Sales whose hold has ended become available. Idempotent; a missed tick is made up by
    the next one."""
    return earnings_release()


@shared_task(  # type: ignore[untyped-decorator, unused-ignore]
    name="marketplace.pay_creators", max_retries=0, ignore_result=True
)
def pay_creators() -> int:
    """Release what is due, then pay each creator's available balance by one transfer per
    period; returns how many were sent. At-least-once is safe: overlapping or killed runs make
    one transfer per creator and period (marketplace/payouts.py). Nothing while billing is
    off."""
    if not secret_key():
        return 0
    earnings_release()
    return payouts_run().sent


@shared_task(  # type: ignore[untyped-decorator, unused-ignore]
    name=AUTO_UPGRADE_TASK, max_retries=0, ignore_result=True
)
def auto_upgrade() -> int:
    """Every minute and after a version is approved: installs that upgrade automatically move
    one step towards their listing's current version; returns how many were upgraded. Safe to
    run twice or overlap (marketplace/auto_upgrade.py)."""
    return auto_upgrade_sweep()
