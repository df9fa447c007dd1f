"""What a workspace's model calls cost since a period start, as the gateway's checks read it:
from a Redis hash beside the ledger instead of a SUM over it on every call.

    spend_since(start)   # before a priced call (plan cap, monthly budget), and for the marks
    spend_added(cost)    # after a priced ledger row commits

The ledger (`UsageRecord`) stays the truth: invoices, reconciliation, the Usage and Billing
pages read it. Here, one hash per workspace schema maps a period start to the micro-dollars
spent since it. A missing field is filled from the ledger (`HSETNX`); a committed cost is
added to every field the hash has (all of them start before the row). The hash expires
`GATEWAY_SPEND_CACHE_SECONDS` after it was first filled and is rebuilt then, which bounds the
one drift the design allows: a cost committed between another process's ledger read and its
`HSETNX` is missing from the figure until the hash expires (docs/decisions.md 78).

Inside a transaction the ledger is read (the transaction may hold uncommitted rows the hash
must not count), and if Redis cannot answer, the ledger is read as before.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum

from agents.gateway.breaker import redis_client
from agents.models import UsageRecord
from tenants.schemas import current_schema

logger = logging.getLogger(__name__)

MICRO = Decimal("0.000001")  # UsageRecord.cost_usd has six decimal places
# Add a committed cost to every period the hash keeps (all started before the cost).
_ADD = """
local fields = redis.call('HKEYS', KEYS[1])
for _, field in ipairs(fields) do redis.call('HINCRBY', KEYS[1], field, ARGV[1]) end
return #fields
"""


def _key(schema: str) -> str:
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "am")
    return f"{prefix}:spend:{schema}"


def ledger_spend_since(start: datetime, until: datetime | None = None) -> Decimal:
    """Model cost in this workspace's ledger since `start` (and before `until`)."""
    rows = UsageRecord.objects.filter(created_at__gte=start)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    return rows.aggregate(s=Sum("cost_usd"))["s"] or Decimal(0)


def spend_since(start: datetime) -> Decimal:
    """This workspace's model cost since `start`, from the hash when it has the figure."""
    if connection.in_atomic_block:
        return ledger_spend_since(start)
    key, field = _key(current_schema()), str(int(start.timestamp()))
    try:
        cached = redis_client().hget(key, field)
    except redis.RedisError:
        logger.warning("spend counter: Redis unavailable, reading the ledger")
        return ledger_spend_since(start)
    if cached is not None:
        return int(cached) * MICRO
    spent = ledger_spend_since(start)
    try:
        pipe = redis_client().pipeline(transaction=True)
        pipe.hsetnx(key, field, int(spent / MICRO))
        pipe.expire(key, settings.GATEWAY_SPEND_CACHE_SECONDS, nx=True)
        pipe.execute()
    except redis.RedisError:
        logger.warning("spend counter: Redis unavailable, not keeping the figure")
    return spent


def spend_added(cost: Decimal) -> None:
    """Count a ledger row's cost once the current transaction commits (at once outside one)."""
    if cost <= 0:
        return
    key = _key(current_schema())

    def add() -> None:
        try:
            redis_client().eval(_ADD, 1, key, int(cost / MICRO))
        except redis.RedisError:
            # The hash may now be short of this cost: drop it, the next read rebuilds it.
            logger.warning("spend counter: could not add a cost; dropping %s", key)
            try:
                redis_client().delete(key)
            except redis.RedisError:
                logger.exception("spend counter: %s may undercount until it expires", key)

    transaction.on_commit(add, robust=True)
