"""Billing's Celery tasks (periodic ones are in CELERY_BEAT_SCHEDULE, config/settings/base.py)."""

from __future__ import annotations

import logging

from celery import shared_task

from billing.meter import meter_flush
from billing.stripe_client import secret_key, stripe_client

logger = logging.getLogger(__name__)


@shared_task(name="billing.flush_meter", max_retries=0)  # type: ignore[untyped-decorator, unused-ignore]
def flush_meter() -> int:
    """Send the due meter outbox rows to Stripe; returns how many were sent. Nothing to do
    while billing is off. Safe to overlap with itself (rows are claimed with SKIP LOCKED) and
    to be killed (a row is sent again with the same identifier; Stripe counts it once)."""
    if not secret_key():
        return 0
    return meter_flush(stripe_client()).sent
