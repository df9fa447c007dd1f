"""A per-process cache of what every gateway call reads before it calls a provider: the alias's
targets (with decrypted credentials), model prices and the workspace's monthly cap.

Without it a call made five queries before the provider saw a byte. With it a call makes one
Redis round trip: the generation counters of the workspace's configuration and of the price
table. Every committed change to those models bumps its counter (`post_save`/`post_delete`,
after commit), so every process drops what it cached on its next call.

Two rules keep it correct:

- only reads made outside a transaction are cached: inside one, a row may be uncommitted (and
  roll back), or the snapshot may predate a change another process already announced;
- the counter is bumped *after* commit, so a process that read the old rows while the change
  was in flight stored them under the old counter, never the new one.

If Redis cannot answer, nothing is cached and every call reads the database, as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, TypeVar, cast

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from agents.gateway.breaker import redis_client
from agents.models import AliasTarget, ModelAlias, ProviderCredential, WorkspaceBudget
from billing import quotas
from billing.models import CreditGrant, ModelPrice, Plan, WorkspacePlan
from billing.pricing import Price
from tenants.models import Workspace
from tenants.schemas import current_schema

logger = logging.getLogger(__name__)

T = TypeVar("T")
PRICES = "prices"  # the counter of the price table (public schema, shared by all workspaces)
MAX_WORKSPACES = 256  # workspaces whose configuration a process keeps

_cached: OrderedDict[str, tuple[tuple[int, int], dict[Any, Any]]] = OrderedDict()
_MISSING = object()
_pinned: contextvars.ContextVar[dict[str, tuple[int, int] | None] | None] = contextvars.ContextVar(
    "gateway_config_pinned", default=None
)


def _key(scope: str) -> str:
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "am")
    return f"{prefix}:gateway-config:{scope}"


def _generation(schema: str) -> tuple[int, int] | None:
    try:
        workspace, prices = redis_client().mget(_key(schema), _key(PRICES))
    except redis.RedisError:
        logger.warning("gateway config cache: Redis unavailable, reading the database")
        return None
    return int(workspace or 0), int(prices or 0)


@contextlib.contextmanager
def one_read() -> Iterator[None]:
    """Inside: every `cached` call uses the counters read by the first one (one Redis round
    trip for a whole gateway call instead of one per value)."""
    token = _pinned.set({})
    try:
        yield
    finally:
        _pinned.reset(token)


def cached(key: Any, load: Callable[[], T]) -> T:
    """`load()`'s result for `key` in the current workspace, from this process's memory when
    neither the workspace's configuration nor the price table changed since it was loaded."""
    if connection.in_atomic_block:
        return load()
    schema = current_schema()
    pinned = _pinned.get()
    if pinned is not None and schema in pinned:
        generation = pinned[schema]
    else:
        generation = _generation(schema)
        if pinned is not None:
            pinned[schema] = generation
    if generation is None:
        return load()
    entry = _cached.get(schema)
    if entry is None or entry[0] != generation:
        entry = (generation, {})
        _cached[schema] = entry
    _cached.move_to_end(schema)
    while len(_cached) > MAX_WORKSPACES:
        _cached.popitem(last=False)
    value = entry[1].get(key, _MISSING)
    if value is _MISSING:
        value = load()
        entry[1][key] = value
    return cast(T, value)


def changed(scope: str) -> None:
    """Announce, once the current transaction commits, that `scope` (a schema name, or PRICES)
    changed."""

    def bump() -> None:
        try:
            redis_client().incr(_key(scope))
        except redis.RedisError:  # the next call reads the database anyway if Redis is down
            logger.exception("gateway config cache: could not announce a change to %s", scope)

    transaction.on_commit(bump, robust=True)


def price_for(kind: str, model: str) -> Price | None:
    def load() -> Price | None:
        row = ModelPrice.objects.filter(provider=kind, model=model).first()
        return row.as_price() if row is not None else None

    return cached(("price", kind, model), load)


def monthly_cap() -> Decimal | None:
    def load() -> Decimal | None:
        budget = WorkspaceBudget.objects.first()
        return budget.monthly_cap_usd if budget is not None else None

    return cached(("monthly_cap",), load)


def billing_view() -> quotas.PlanView | None:
    """The workspace's plan as the gateway checks priced calls against it (billing.quotas),
    kept until the plan row, a plan or a credit grant changes, and re-read once the period it
    was read for has ended (a new period has grants and counters of its own)."""
    schema = current_schema()
    view = cached(("billing_view",), lambda: quotas.plan_view(schema_name=schema))
    if view is not None and timezone.now() >= view.period_end:
        view = quotas.plan_view(schema_name=schema)
    return view


def metered(view: quotas.PlanView | None) -> tuple[int, str] | None:
    """(workspace id, Stripe customer) when the view's AI spend is metered."""
    return (view.workspace_id, view.metered_customer) if view and view.metered_customer else None


def _workspace_changed(sender: type[Model], **kwargs: Any) -> None:
    changed(current_schema())


# Plan-row fields the plan view does not keep (run starts write them on every run): saving
# only these announces nothing.
_PLAN_ROW_QUIET = frozenset(
    {"runs_used", "current_period_start", "current_period_end", "updated_at"}
)


def _plan_row_changed(
    sender: type[Model], instance: WorkspacePlan | CreditGrant, **kwargs: Any
) -> None:
    fields = kwargs.get("update_fields")
    if fields is not None and set(fields) <= _PLAN_ROW_QUIET:
        return
    schema = (
        Workspace.objects.filter(pk=instance.workspace_id)
        .values_list("schema_name", flat=True)
        .first()
    )
    if schema is not None:
        changed(schema)


def _prices_changed(sender: type[Model], **kwargs: Any) -> None:
    changed(PRICES)


def connect_signals() -> None:
    """Called from AgentsConfig.ready: the models whose rows `cached` values come from."""
    for model in (ModelAlias, AliasTarget, ProviderCredential, WorkspaceBudget):
        post_save.connect(_workspace_changed, sender=model, dispatch_uid=f"gw-{model.__name__}")
        post_delete.connect(_workspace_changed, sender=model, dispatch_uid=f"gw-d-{model.__name__}")
    post_save.connect(_prices_changed, sender=ModelPrice, dispatch_uid="gw-ModelPrice")
    post_delete.connect(_prices_changed, sender=ModelPrice, dispatch_uid="gw-d-ModelPrice")
    # the plan view: a plan's allowance changes every workspace's (the shared counter)
    post_save.connect(_prices_changed, sender=Plan, dispatch_uid="gw-Plan")
    for billed in (WorkspacePlan, CreditGrant):
        post_save.connect(_plan_row_changed, sender=billed, dispatch_uid=f"gw-{billed.__name__}")
        post_delete.connect(
            _plan_row_changed, sender=billed, dispatch_uid=f"gw-d-{billed.__name__}"
        )
