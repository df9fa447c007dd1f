"""Stripe's webhooks about purchases (issue 15), after dj-stripe has verified, deduplicated and
stored the event (billing/webhooks.py describes the pipeline). Each receiver takes only the id
from the event and hands it to `marketplace.purchases`, which re-reads the object from Stripe
and moves the purchase forward only, so a late, repeated or out-of-order event is harmless.
Events about anything but a purchase (no `purchase_id` in the metadata) are left alone.

Imported by `MarketplaceConfig.ready()`; the endpoint must enable these event types
(billing/webhooks.py ENABLED_EVENTS)."""

from __future__ import annotations

from typing import Any

from djstripe.event_handlers import djstripe_receiver
from djstripe.models import Event

from marketplace import purchases

EVENTS = [
    "checkout.session.completed",
    "payment_intent.succeeded",
    "setup_intent.succeeded",
    "invoice.paid",
    "invoice.payment_failed",
    "customer.subscription.updated",
    "customer.subscription.deleted",
]


def _object(event: Event) -> dict[str, Any]:
    found = (event.data or {}).get("object") or {}
    return found if isinstance(found, dict) else {}


def _for_purchase(obj: dict[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("purchase_id"))


@djstripe_receiver(EVENTS)  # type: ignore[untyped-decorator]
def on_purchase_event(sender: Any, event: Event, **kwargs: Any) -> None:
    obj = _object(event)
    kind = event.type
    if kind == "invoice.paid":  # per-run lines and monthly invoices carry it on their parts
        if purchases.billed_purchases_exist(customer_id=obj.get("customer")):
            purchases.invoice_paid(invoice_id=str(obj["id"]))
    elif kind == "invoice.payment_failed":
        if purchases.billed_purchases_exist(customer_id=obj.get("customer")):
            purchases.invoice_payment_failed(invoice_id=str(obj["id"]))
    elif not _for_purchase(obj):
        return
    elif kind == "checkout.session.completed":
        purchases.checkout_completed(session_id=str(obj["id"]))
    elif kind == "payment_intent.succeeded":
        purchases.payment_intent_succeeded(payment_intent_id=str(obj["id"]))
    elif kind == "setup_intent.succeeded":
        purchases.setup_intent_succeeded(setup_intent_id=str(obj["id"]))
    else:
        purchases.subscription_changed(subscription_id=str(obj["id"]))
