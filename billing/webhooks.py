"""Stripe's webhooks, after dj-stripe: its view (`/stripe/webhook/<uuid>/`) verifies the
signature within the endpoint's tolerance, stores the Event (a duplicate event id is not
processed again) and syncs its own customer, subscription and invoice tables; then these
receivers hand the subscription the event is about to `subscription_sync`, which re-reads it
from Stripe and applies only forward transitions. They run inside dj-stripe's transaction: a
failure rolls the event back and answers 500, so Stripe delivers it again.

`webhook_endpoint_ensure` (manage.py billing_webhook_endpoint) registers the endpoint."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

import stripe
from django.urls import reverse
from djstripe.enums import WebhookEndpointValidation
from djstripe.event_handlers import djstripe_receiver
from djstripe.models import Event, WebhookEndpoint
from djstripe.settings import djstripe_settings

from billing.stripe_client import secret_key, stripe_client, stripe_errors
from billing.subscription_state import subscription_sync
from core.exceptions import ServiceUnavailable

SUBSCRIPTION_EVENTS = [
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
]
OTHER_EVENTS = ["checkout.session.completed", "invoice.paid", "invoice.payment_failed"]


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


@djstripe_receiver([*SUBSCRIPTION_EVENTS, *OTHER_EVENTS])  # type: ignore[untyped-decorator]
def on_subscription_event(sender: Any, event: Event, **kwargs: Any) -> None:
    subscription_id = _subscription_id(event.data.get("object") or {})
    if subscription_id is None:  # a one-time checkout or invoice: no plan to change
        return
    customer = (event.data.get("object") or {}).get("customer")
    subscription_sync(
        subscription_id=subscription_id,
        customer_id=customer if isinstance(customer, str) else None,
        event_created=event.created,
    )


# What the endpoint asks Stripe for: our receivers' events, and those that keep dj-stripe's
# customer, product, price, subscription and invoice tables (the billing page lists invoices
# from them) current.
ENABLED_EVENTS = [
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


@dataclass(frozen=True)
class EndpointReport:
    endpoint: WebhookEndpoint
    created: bool
    removed: list[str]  # Stripe endpoints at our URL whose secret we did not have


def webhook_endpoint_ensure(*, base_url: str) -> EndpointReport:
    """One Stripe webhook endpoint for this platform at `<base_url>/stripe/webhook/<uuid>/`,
    stored as dj-stripe's WebhookEndpoint with its signing secret (verify_signature, Stripe's
    default tolerance of 300 s). Idempotent: an endpoint we have that Stripe still has is kept;
    endpoints at our URL that Stripe has but we lost the secret of are deleted (their events
    could never be verified) and a new one is created."""
    client = stripe_client()
    base_url = base_url.rstrip("/")
    probe = uuid.UUID(int=0)  # any uuid: what comes before it is the URL of our endpoints
    prefix = base_url + reverse("djstripe:djstripe_webhook_by_uuid", args=[probe])
    prefix = prefix.split(str(probe))[0]
    for local in WebhookEndpoint.objects.filter(url__startswith=prefix).order_by("created"):
        try:
            remote = client.v1.webhook_endpoints.retrieve(local.id)
        except stripe.InvalidRequestError:  # deleted at Stripe: forget it
            local.delete()
            continue
        except stripe.StripeError as exc:
            raise ServiceUnavailable(f"Stripe could not be asked about {local.id}: {exc}") from exc
        if remote.status == "enabled" and remote.url == local.url and local.secret:
            return EndpointReport(local, created=False, removed=[])
    removed = []
    with stripe_errors("list the webhook endpoints"):
        for remote in client.v1.webhook_endpoints.list(params={"limit": 100}).data:
            if remote.url.startswith(prefix):
                client.v1.webhook_endpoints.delete(remote.id)
                removed.append(remote.id)
    endpoint_uuid = uuid.uuid4()
    url = base_url + reverse("djstripe:djstripe_webhook_by_uuid", args=[endpoint_uuid])
    with stripe_errors("create the webhook endpoint"):
        created = client.v1.webhook_endpoints.create(
            params={
                "url": url,
                "enabled_events": cast(Any, ENABLED_EVENTS),
                "api_version": djstripe_settings.STRIPE_API_VERSION,
                "description": "Agent Market billing (dj-stripe)",
                "metadata": {"djstripe_uuid": str(endpoint_uuid)},
            },
            options={"idempotency_key": f"webhook-endpoint-{endpoint_uuid}"},
        )
    data = created.to_dict()
    data["djstripe_validation_method"] = WebhookEndpointValidation.verify_signature
    data["djstripe_tolerance"] = stripe.Webhook.DEFAULT_TOLERANCE  # seconds a signature is good
    WebhookEndpoint.objects.filter(url__startswith=prefix).delete()  # ones Stripe no longer has
    endpoint = WebhookEndpoint.sync_from_stripe_data(data, api_key=secret_key())
    return EndpointReport(endpoint, created=True, removed=removed)
