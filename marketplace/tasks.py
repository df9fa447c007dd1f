"""The marketplace's periodic money tasks (CELERY_BEAT_SCHEDULE, config/settings/base.py). They
run in the public schema, where the ledger and payouts live."""

from __future__ import annotations

from celery import shared_task

from billing.stripe_client import secret_key
from marketplace.earnings import earnings_release
from marketplace.payouts import payouts_run


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
