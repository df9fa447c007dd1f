"""Stripe's webhooks, after dj-stripe: acknowledge at once, process on the workers.

Our view at dj-stripe's address (`/stripe/webhook/<uuid>/`, billing/views.py `stripe_webhook`)
stores the request as dj-stripe's WebhookEventTrigger, verifies its signature within the
endpoint's tolerance (`webhook_receive`), queues `billing.process_webhooks` on commit and
answers 200; dj-stripe's own view would process the event inside the request, and its hook for
doing otherwise (DJSTRIPE_WEBHOOK_EVENT_CALLBACK) is deprecated. The task (and the beat sweep,
for a message that was lost) runs `webhooks_drain`:

- triggers are claimed a batch at a time, oldest first (SELECT ... FOR UPDATE SKIP LOCKED, so
  drains in several workers never take the same one), each processed by dj-stripe in a
  savepoint of the batch's transaction (`trigger.process()`: the Event is stored once per
  event id, a duplicate is a no-op, and our receivers run). dj-stripe's own handlers, which
  refresh its mirror of customers, subscriptions and invoices, are not run here: they are
  owed to the mirror (billing/stripe_mirror.py, decision 91), refreshed once per object a
  few seconds later;
- our receiver does not sync the workspace there: it notes the subscription, and after the
  batch `subscription_sync` (which re-reads the subscription from Stripe and applies only
  forward transitions) runs once per subscription with the newest event's `created`;
- the trigger row is the durable record of what is left to do: valid and not processed means
  queued (no Event yet), sync pending (Event set; another drain leaves it alone for
  `SYNC_LEASE`, then takes it over) or failed (`exception` and `traceback` set, tried again
  after a backoff that doubles, from `RETRY_BASE` up to `RETRY_MAX`, for `RETRY_FOR`; after
  that staff replay it from the admin).

`webhook_endpoint_ensure` (manage.py billing_webhook_endpoint) registers the two endpoints:
the platform's, and the Connect one for events on creators' connected accounts."""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast

import stripe
from django.db import transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, QuerySet, Value
from django.db.models.functions import Greatest, Least
from django.urls import reverse
from django.utils import timezone
from djstripe.enums import WebhookEndpointValidation
from djstripe.event_handlers import djstripe_receiver
from djstripe.models import Event, WebhookEndpoint, WebhookEventTrigger
from djstripe.settings import djstripe_settings

from billing.stripe_client import secret_key, stripe_client, stripe_errors
from billing.stripe_mirror import MirrorBatch
from billing.subscription_state import subscription_sync
from core.exceptions import ServiceUnavailable
from core.queue import enqueue

logger = logging.getLogger(__name__)

PROCESS_TASK = "billing.process_webhooks"
BATCH_SIZE = 200  # triggers per drain batch: one subscription_sync per subscription in it
SYNC_LEASE = timedelta(minutes=5)  # a pending sync this old was abandoned (its worker died)
RETRY_BASE = timedelta(seconds=30)  # a failed trigger waits this, then doubling ...
RETRY_MAX = timedelta(hours=1)  # ... up to this between attempts ...
RETRY_FOR = timedelta(days=3)  # ... for as long as Stripe itself retries; then staff replay

SUBSCRIPTION_EVENTS = [
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
]
OTHER_EVENTS = ["checkout.session.completed", "invoice.paid", "invoice.payment_failed"]
SYNCED_EVENTS = frozenset([*SUBSCRIPTION_EVENTS, *OTHER_EVENTS])  # the workspace's plan follows


# What the platform's endpoint asks Stripe for: our receivers' events about the platform's own
# objects (billing's here; the marketplace's for purchases, disputes and reversals of payout
# transfers), and those that keep dj-stripe's customer, product, price, subscription and
# invoice tables (the billing page lists invoices from them) current.
ENABLED_EVENTS = [
    "payment_intent.succeeded",
    "setup_intent.succeeded",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "transfer.reversed",
    *OTHER_EVENTS,
    *SUBSCRIPTION_EVENTS,
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "invoice.created",
    "invoice.finalized",
    "invoice.updated",
    "invoice.voided",
    "product.created",
    "product.updated",
    "price.created",
    "price.updated",
]
# What happens on creators' connected accounts (the event's `account` is set): Stripe sends it
# only to an endpoint created with `connect=true`, so the Connect endpoint asks for these
# (docs/billing.md "Webhooks"): onboarding status, and their bank payouts.
CONNECT_EVENTS = ["account.updated", "payout.paid", "payout.failed"]


def _subscription_id(obj: dict[str, Any]) -> str | None:
    """The subscription a subscription, checkout session or invoice object is about."""
    if obj.get("object") == "subscription":
        return str(obj["id"])
    found = obj.get("subscription")
    if found is None and obj.get("object") == "invoice":  # API 2025-03 and later
        details = (obj.get("parent") or {}).get("subscription_details") or {}
        found = details.get("subscription")
    if isinstance(found, dict):
        found = found.get("id")
    return str(found) if found else None


@dataclass
class _Sync:
    """One `subscription_sync` owed by a batch: the newest event about the subscription, and
    the triggers that are done when it is."""

    customer_id: str | None
    event_created: datetime
    trigger_ids: list[int] = field(default_factory=list)


@dataclass
class _Batch:
    trigger_id: int = 0  # the trigger being processed
    syncs: dict[str, _Sync] = field(default_factory=dict)

    def owe(self, subscription_id: str, customer_id: str | None, created: datetime) -> None:
        sync = self.syncs.setdefault(subscription_id, _Sync(customer_id, created))
        sync.customer_id = sync.customer_id or customer_id
        sync.event_created = max(sync.event_created, created)
        if self.trigger_id not in sync.trigger_ids:
            sync.trigger_ids.append(self.trigger_id)

    def forget(self, trigger_id: int) -> None:
        """A trigger that failed after noting a sync is not done when the sync is."""
        for sync in self.syncs.values():
            if trigger_id in sync.trigger_ids:
                sync.trigger_ids.remove(trigger_id)


# Set while `webhooks_drain` processes a trigger: the receiver notes the sync in the batch.
# Unset (a staff replay of a stored Event): it syncs.
_draining: ContextVar[_Batch | None] = ContextVar("billing_webhook_batch", default=None)


def _sync_owed(event: Event) -> None:
    if event.type not in SYNCED_EVENTS:
        return
    obj = event.data.get("object") or {}
    subscription_id = _subscription_id(obj)
    if subscription_id is None:  # a one-time checkout or invoice: no plan to change
        return
    customer = obj.get("customer")
    customer_id = customer if isinstance(customer, str) else None
    batch = _draining.get()
    if batch is not None:
        batch.owe(subscription_id, customer_id, event.created)
        return
    subscription_sync(
        subscription_id=subscription_id, customer_id=customer_id, event_created=event.created
    )


@djstripe_receiver(sorted(SYNCED_EVENTS))  # type: ignore[untyped-decorator]
def on_subscription_event(sender: Any, event: Event, **kwargs: Any) -> None:
    _sync_owed(event)


def webhook_receive(
    *, endpoint: WebhookEndpoint, headers: dict[str, str], body: str, remote_ip: str
) -> WebhookEventTrigger:
    """Store one delivery as dj-stripe's trigger row, verify its signature (dj-stripe's
    `validate`, within the endpoint's tolerance) and, when it checks out, queue it for the
    workers once stored. Nothing is processed here. An invalid one is kept (valid=False) for
    the admin's webhook log and never processed."""
    with transaction.atomic():
        trigger = WebhookEventTrigger.objects.create(
            headers=headers,
            body=body,
            remote_ip=remote_ip,
            stripe_trigger_account=endpoint.djstripe_owner_account,
            webhook_endpoint=endpoint,
        )
        account = endpoint.djstripe_owner_account
        api_key = (account.default_api_key if account else None) or secret_key()
        trigger.valid = trigger.validate(api_key=api_key, secret=endpoint.secret)
        trigger.save(update_fields=["valid", "updated"])
        if trigger.valid:
            webhook_trigger_enqueue(trigger)
    return trigger


def webhook_trigger_enqueue(trigger: WebhookEventTrigger) -> None:
    """Queue `billing.process_webhooks` for a stored, valid trigger once the current
    transaction commits. robust: a broker outage must not fail a delivery that is stored; the
    sweep processes it."""
    transaction.on_commit(partial(enqueue, PROCESS_TASK, trigger.pk), robust=True)


def _due(now: datetime) -> QuerySet[WebhookEventTrigger]:
    """Triggers a drain may take: queued; failed, once their backoff has passed (the gap is
    the trigger's age at its last attempt, within RETRY_BASE..RETRY_MAX, so it doubles); or
    with a sync pending that its drain abandoned."""
    gap = Greatest(
        Value(RETRY_BASE),
        Least(
            ExpressionWrapper(F("updated") - F("created"), output_field=DurationField()),
            Value(RETRY_MAX),
        ),
        output_field=DurationField(),
    )
    due: QuerySet[WebhookEventTrigger] = (
        WebhookEventTrigger.objects.filter(valid=True, processed=False)
        .annotate(retry_at=ExpressionWrapper(F("updated") + gap, output_field=DateTimeField()))
        .filter(
            Q(exception="", event__isnull=True)
            | Q(exception="", event__isnull=False, updated__lte=now - SYNC_LEASE)
            | ~Q(exception="") & Q(retry_at__lte=now, created__gte=now - RETRY_FOR)
        )
    )
    return due


@dataclass(frozen=True)
class DrainReport:
    claimed: int  # triggers taken in this batch
    processed: int  # done: applied, or a duplicate of an event already stored
    failed: int  # exception recorded; tried again after the backoff
    syncs: int  # subscription_sync calls (one per subscription in the batch)


def _failed(trigger: WebhookEventTrigger, exc: BaseException) -> None:
    trigger.processed = False
    trigger.exception = str(exc)[: WebhookEventTrigger._meta.get_field("exception").max_length]
    trigger.traceback = traceback.format_exc()
    logger.warning("Stripe webhook %s failed: %s", trigger.pk, trigger.exception)


OUTCOME_FIELDS = ["event", "processed", "exception", "traceback", "updated"]


def _process(trigger: WebhookEventTrigger, batch: _Batch, mirror: MirrorBatch) -> None:
    """dj-stripe's processing of one claimed trigger, in a savepoint of the batch's
    transaction: the Event stored (once per event id) and our receivers run; dj-stripe's own
    handlers are owed to the mirror (billing/stripe_mirror.py). The outcome is set on the
    trigger, saved with the batch's."""
    batch.trigger_id = trigger.pk
    token = _draining.set(batch)
    try:
        with mirror.step(), transaction.atomic():
            if trigger.event is not None:  # stored earlier; the sync was not done
                _sync_owed(trigger.event)
            else:
                trigger.process(save=False)  # a stored event id: returns it, no handlers
    except Exception as exc:
        batch.forget(trigger.pk)
        _failed(trigger, exc)
    else:
        pending = any(trigger.pk in sync.trigger_ids for sync in batch.syncs.values())
        trigger.processed = not pending
        trigger.exception = trigger.traceback = ""
    finally:
        _draining.reset(token)
    trigger.updated = timezone.now()


def webhooks_drain(*, batch_size: int = BATCH_SIZE, now: datetime | None = None) -> DrainReport:
    """Process up to `batch_size` due webhook triggers, oldest first, then sync each
    subscription they are about once. The batch is claimed in one statement (FOR UPDATE SKIP
    LOCKED) and processed in one transaction, each trigger in a savepoint; so it is safe to run
    in any number of workers at once (two drains never take one trigger; two triggers of one
    event store it once, and only the one that stored it syncs) and to kill (what was not
    committed is due again). One trigger's failure is recorded on it (the admin's webhook log
    shows it) and stops nothing else."""
    now = now or timezone.now()
    batch = _Batch()
    mirror = MirrorBatch()
    failed = 0
    with transaction.atomic():
        triggers = list(
            _due(now)
            .order_by("created", "pk")
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("event")[:batch_size]
        )
        for trigger in triggers:
            _process(trigger, batch, mirror)
            failed += bool(trigger.exception)
        WebhookEventTrigger.objects.bulk_update(triggers, OUTCOME_FIELDS)
        mirror.save()
    claimed = len(triggers)
    done: list[int] = []
    for subscription_id, sync in batch.syncs.items():
        try:
            subscription_sync(
                subscription_id=subscription_id,
                customer_id=sync.customer_id,
                event_created=sync.event_created,
            )
        except Exception as exc:
            for trigger in WebhookEventTrigger.objects.filter(pk__in=sync.trigger_ids):
                _failed(trigger, exc)
                trigger.save(update_fields=["processed", "exception", "traceback", "updated"])
            failed += len(sync.trigger_ids)
        else:
            done += sync.trigger_ids
    WebhookEventTrigger.objects.filter(pk__in=done).update(processed=True, updated=timezone.now())
    return DrainReport(
        claimed=claimed, processed=claimed - failed, failed=failed, syncs=len(batch.syncs)
    )


class EndpointScope:
    """Which of the two endpoints: its `metadata[endpoint]` at Stripe and in our copy."""

    PLATFORM = "platform"
    CONNECT = "connect"


ENDPOINT_EVENTS = {EndpointScope.PLATFORM: ENABLED_EVENTS, EndpointScope.CONNECT: CONNECT_EVENTS}


@dataclass(frozen=True)
class EndpointReport:
    endpoint: WebhookEndpoint
    created: bool
    removed: list[str]  # Stripe endpoints at our URL whose secret we did not have
    updated: bool = False  # kept, with its enabled events brought up to this release's list


def _scope_of(metadata: Any) -> str:
    """An endpoint's scope; one registered before there were two is the platform's."""
    return str((metadata or {}).get("endpoint") or EndpointScope.PLATFORM)


def webhook_endpoint_ensure(*, base_url: str) -> list[EndpointReport]:
    """This platform's two Stripe webhook endpoints at `<base_url>/stripe/webhook/<uuid>/`: the
    platform's (ENABLED_EVENTS) and the Connect one (`connect=true`, CONNECT_EVENTS: events on
    creators' connected accounts reach no other), each stored as dj-stripe's WebhookEndpoint
    with its signing secret (verify_signature, Stripe's default tolerance of 300 s), so
    `stripe_webhook` verifies either. Idempotent, per endpoint: one we have that Stripe still
    has is kept (its enabled events updated when this release listens to others, so a deploy
    that handles a new event type starts receiving it); those at our URL that Stripe has but we
    lost the secret of are deleted (their events could never be verified) and a new one is
    created."""
    client = stripe_client()
    base_url = base_url.rstrip("/")
    probe = uuid.UUID(int=0)  # any uuid: what comes before it is the URL of our endpoints
    prefix = base_url + reverse("stripe_webhook", args=[probe])
    prefix = prefix.split(str(probe))[0]
    kept: dict[str, WebhookEndpoint] = {}
    events: dict[str, set[str]] = {}  # what each kept endpoint enables at Stripe
    for local in WebhookEndpoint.objects.filter(url__startswith=prefix).order_by("created"):
        try:
            remote = client.v1.webhook_endpoints.retrieve(local.id)
        except stripe.InvalidRequestError:  # deleted at Stripe: forget it
            local.delete()
            continue
        except stripe.StripeError as exc:
            raise ServiceUnavailable(f"Stripe could not be asked about {local.id}: {exc}") from exc
        scope = _scope_of(local.metadata)
        usable = remote.status == "enabled" and remote.url == local.url and local.secret
        if usable and scope not in kept:
            kept[scope] = local
            events[scope] = set(remote.enabled_events or [])
    reports = []
    for scope in (EndpointScope.PLATFORM, EndpointScope.CONNECT):
        if scope in kept:
            updated = events[scope] != set(ENDPOINT_EVENTS[scope])
            if updated:
                _endpoint_events_update(client, kept[scope], scope)
            reports.append(EndpointReport(kept[scope], created=False, removed=[], updated=updated))
        else:
            reports.append(_endpoint_create(client, base_url, prefix, scope, keep=kept.values()))
    return reports


def _endpoint_events_update(
    client: stripe.StripeClient, endpoint: WebhookEndpoint, scope: str
) -> None:
    """Enable exactly this release's events of `scope` on a kept endpoint (its URL, secret and
    API version stay: Stripe fixes the version at creation), at Stripe and in our copy."""
    wanted = list(ENDPOINT_EVENTS[scope])
    with stripe_errors(f"update the {scope} webhook endpoint's events"):
        client.v1.webhook_endpoints.update(
            endpoint.id, params={"enabled_events": cast(Any, wanted)}
        )
    endpoint.enabled_events = wanted
    endpoint.save(update_fields=["enabled_events"])


def _endpoint_create(
    client: stripe.StripeClient,
    base_url: str,
    prefix: str,
    scope: str,
    *,
    keep: Iterable[WebhookEndpoint],
) -> EndpointReport:
    """A new endpoint of `scope`, after deleting (at Stripe and here) the others of that scope
    at our URL: we do not have their secret."""
    keep_ids = {endpoint.id for endpoint in keep}
    removed = []
    with stripe_errors("list the webhook endpoints"):
        for remote in client.v1.webhook_endpoints.list(params={"limit": 100}).data:
            if (
                remote.url.startswith(prefix)
                and remote.id not in keep_ids
                and _scope_of(remote.metadata) == scope
            ):
                client.v1.webhook_endpoints.delete(remote.id)
                removed.append(remote.id)
    endpoint_uuid = uuid.uuid4()
    url = base_url + reverse("stripe_webhook", args=[endpoint_uuid])
    params: dict[str, Any] = {
        "url": url,
        "enabled_events": ENDPOINT_EVENTS[scope],
        "api_version": djstripe_settings.STRIPE_API_VERSION,
        "description": f"Agent Market billing (dj-stripe), {scope} events",
        "metadata": {"djstripe_uuid": str(endpoint_uuid), "endpoint": scope},
    }
    if scope == EndpointScope.CONNECT:
        params["connect"] = True
    with stripe_errors(f"create the {scope} webhook endpoint"):
        created = client.v1.webhook_endpoints.create(
            params=cast(Any, params),
            options={"idempotency_key": f"webhook-endpoint-{endpoint_uuid}"},
        )
    data = created.to_dict()
    data["djstripe_validation_method"] = WebhookEndpointValidation.verify_signature
    data["djstripe_tolerance"] = stripe.Webhook.DEFAULT_TOLERANCE  # seconds a signature is good
    stale = [  # ours of that scope that Stripe no longer has
        local.pk
        for local in WebhookEndpoint.objects.filter(url__startswith=prefix)
        if local.id not in keep_ids and _scope_of(local.metadata) == scope
    ]
    WebhookEndpoint.objects.filter(pk__in=stale).delete()
    endpoint = WebhookEndpoint.sync_from_stripe_data(data, api_key=secret_key())
    return EndpointReport(endpoint, created=True, removed=removed)
