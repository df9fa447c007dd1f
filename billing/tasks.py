"""Billing's periodic tasks (CELERY_BEAT_SCHEDULE in config/settings/base.py). Beat sends them
without a workspace: they run in the public schema, where the plan rows live."""

from __future__ import annotations

from celery import shared_task

from billing.subscription_state import grace_expire


@shared_task(  # type: ignore[untyped-decorator, unused-ignore]
    name="billing.expire_grace", max_retries=0, ignore_result=True
)
def expire_grace() -> int:
    """Workspaces whose grace period after a failed payment has ended become read-only for
    runs. Idempotent (a row already read-only, or paid meanwhile, is left alone); a missed
    tick is made up by the next one."""
    return grace_expire()
