"""dj-stripe's mirror of Stripe, refreshed off the webhooks' hot path (decision 91).

dj-stripe connects its own handlers to its webhook signals: for most events they re-read the
event's object from Stripe and store it with its related objects (customer, items, lines, tax
rates, the owner account), about 40 queries and two Stripe requests an event. Nothing of ours
waits on that mirror (the workspace's plan follows `subscription_sync`, purchases and earnings
their own receivers, each re-reading Stripe itself); only the billing page's invoice list and
the admin read it. So at start (`mirror_take_over`, from BillingConfig.ready) their handlers are
moved off the signals: a webhook event's processing stores it and runs our receivers, and
`mirror_owe` (connected to the same signals in their place) notes the refresh in
`StripeMirrorSync` in the event's own transaction. `mirror_drain` (task `billing.mirror_stripe`,
queued a few seconds out and swept by beat) runs dj-stripe's handlers for the owed rows: of
several events about one object that their handlers answer by re-reading it
(`RESYNCED_EVENTS`), only the newest received; deletions and the rest, each.

A refresh that fails is tried again after a backoff (billing/meter.py's, doubling up to an
hour) and shown in the admin with its error until it succeeds. The mirror may lag Stripe by the
queue's delay; an invoice appears on the billing page seconds after its webhook."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone
from djstripe import event_handlers
from djstripe.models import Event
from djstripe.signals import WEBHOOK_SIGNALS

from billing.meter import retry_at
from billing.models import StripeMirrorSync
from core.queue import enqueue

logger = logging.getLogger(__name__)

MIRROR_TASK = "billing.mirror_stripe"
QUEUED_KEY = "billing:stripe-mirror-queued"
DELAY_SECONDS = 3  # events arriving meanwhile about the same object are refreshed once
BATCH_SIZE = 100
LEASE = timedelta(minutes=5)  # a claimed row whose drain died is taken again after this

# dj-stripe's handlers for these re-read the event's object from Stripe and store what Stripe
# has now ("synchronised with the Stripe API for parity", djstripe/event_handlers.py
# `_handle_crud_like_event`): of several such events about one object, the last one's refresh
# covers the others. Not coalesced: deletions (a customer is purged) and everything else.
RESYNCED_EVENTS = frozenset(
    {
        "account.updated",
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "checkout.session.completed",
        "customer.created",
        "customer.updated",
        "customer.subscription.created",
        "customer.subscription.updated",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_failed",
        "invoice.updated",
        "invoice.voided",
        "payment_intent.succeeded",
        "payout.failed",
        "payout.paid",
        "price.created",
        "price.updated",
        "product.created",
        "product.updated",
        "setup_intent.succeeded",
        "transfer.reversed",
    }
)

Handler = Callable[..., Any]
_theirs: dict[str, list[Handler]] = {}  # event type -> dj-stripe's handlers, moved off


def mirror_take_over() -> None:
    """Move dj-stripe's handlers off its webhook signals (remembered per event type for
    `mirror_drain`) and connect `mirror_owe` in their place. Idempotent."""
    handlers = [
        function
        for name, function in vars(event_handlers).items()
        if name.startswith("handle_") and callable(function)
    ]
    for event_type, signal in WEBHOOK_SIGNALS.items():
        for handler in handlers:
            if signal.disconnect(handler, sender=Event):
                _theirs.setdefault(event_type, []).append(handler)
        if event_type in _theirs:
            _connect(signal)


def _connect(signal: Signal) -> None:
    signal.connect(mirror_owe, sender=Event, dispatch_uid="billing.stripe_mirror")


def _key(event: Event) -> str:
    obj = (event.data or {}).get("object") or {}
    if event.type in RESYNCED_EVENTS and obj.get("id"):
        return f"{obj.get('object')}:{obj['id']}"
    return f"event:{event.id}"


class MirrorBatch:
    """The refreshes a webhook drain's batch owes, saved together at its end in key order, so
    two drains upserting rows about the same objects never lock them in opposite orders (a
    deadlock). What a step (one trigger's savepoint) noted is kept only if the step succeeds."""

    def __init__(self) -> None:
        self._owed: dict[str, tuple[str, str]] = {}
        self._step: dict[str, tuple[str, str]] = {}

    @contextmanager
    def step(self) -> Iterator[None]:
        self._step = {}
        token = _collecting.set(self)
        try:
            yield
            self._owed.update(self._step)
        finally:
            _collecting.reset(token)

    def note(self, event: Event) -> None:
        self._step[_key(event)] = (event.id, event.type)

    def save(self) -> None:
        _owe([(key, *self._owed[key]) for key in sorted(self._owed)])
        self._owed = {}


_collecting: ContextVar[MirrorBatch | None] = ContextVar("billing_mirror_batch", default=None)


def mirror_owe(sender: Any, event: Event, **kwargs: Any) -> None:
    """Note that dj-stripe's handlers are owed for `event` (in the caller's transaction; in a
    webhook drain's batch, at its end): a row per object for events whose refresh re-reads the
    object (a newer event takes over the row, keeping its due time and backoff), else per
    event. The drain is queued on commit."""
    batch = _collecting.get()
    if batch is not None:
        batch.note(event)
        return
    _owe([(_key(event), event.id, event.type)])


def _owe(rows: list[tuple[str, str, str]]) -> None:
    if not rows:
        return
    StripeMirrorSync.objects.bulk_create(
        [
            StripeMirrorSync(key=key, event_id=event_id, event_type=kind)
            for key, event_id, kind in rows
        ],
        update_conflicts=True,
        unique_fields=["key"],
        update_fields=["event_id", "event_type"],
    )
    transaction.on_commit(_drain_soon, robust=True)


def _drain_soon() -> None:
    """One drain a few seconds out for everything owed meanwhile (a cache key set if absent),
    not one task per event; the beat sweep is the backstop for a lost message."""
    if cache.add(QUEUED_KEY, 1, timeout=DELAY_SECONDS):
        enqueue(MIRROR_TASK, countdown=DELAY_SECONDS)


# Refreshed first within a claimed batch: what others point at (dj-stripe fetches a missing
# related object itself, so an invoice refreshed before its subscription reads that twice).
_ORDER = ["customer", "product", "price", "subscription", "checkout.session", "invoice"]


def _rank(row: StripeMirrorSync) -> int:
    kind = row.key.rsplit(":", 1)[0]
    return _ORDER.index(kind) if kind in _ORDER else len(_ORDER)


def _claim(now: datetime, batch_size: int) -> list[StripeMirrorSync]:
    with transaction.atomic():
        rows = list(
            StripeMirrorSync.objects.select_for_update(skip_locked=True)
            .filter(due_at__lte=now)
            .order_by("due_at", "id")[:batch_size]
        )
        StripeMirrorSync.objects.filter(pk__in=[row.pk for row in rows]).update(due_at=now + LEASE)
    return sorted(rows, key=_rank)


def _refresh(row: StripeMirrorSync, event: Event | None) -> None:
    if event is None:  # not stored: nothing to refresh from (a purged test event)
        return
    with transaction.atomic():
        for handler in _theirs.get(row.event_type, ()):
            handler(sender=Event, event=event)


def mirror_drain(*, batch_size: int = BATCH_SIZE, now: datetime | None = None) -> int:
    """Run dj-stripe's handlers for up to `batch_size` due rows, oldest first; returns how
    many were taken. Each row is leased (LEASE) before its handlers run outside the claim's
    transaction, so webhook processing that takes the row over never waits on a refresh, and
    several drains never take one row. A row taken over meanwhile is due again at once (its
    newer event's refresh is owed); a failure is tried again after the backoff."""
    now = now or timezone.now()
    rows = _claim(now, batch_size)
    events = {e.id: e for e in Event.objects.filter(id__in={row.event_id for row in rows})}
    for row in rows:
        try:
            _refresh(row, events.get(row.event_id))
        except Exception as exc:
            row.attempts += 1
            message = f"{type(exc).__name__}: {exc}"[:500]
            logger.warning("Stripe mirror refresh %s failed: %s", row.key, message)
            StripeMirrorSync.objects.filter(pk=row.pk).update(
                attempts=row.attempts, last_error=message, due_at=retry_at(row.attempts, now)
            )
            continue
        done, _ = StripeMirrorSync.objects.filter(pk=row.pk, event_id=row.event_id).delete()
        if not done:  # a newer event took the row over while it was refreshed
            StripeMirrorSync.objects.filter(pk=row.pk).update(due_at=now, attempts=0)
    return len(rows)
