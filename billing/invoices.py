"""The workspace's invoices and subscription interval, read from dj-stripe's mirror of Stripe
(public schema). Stripe writes them, the webhook handlers sync them; pages and the API only
read."""

from __future__ import annotations

from django.db.models import QuerySet
from djstripe.models import Invoice, Subscription

from billing.plans import workspace_plan
from tenants.permissions import Access, Perm


def invoices_list(*, access: Access) -> QuerySet[Invoice]:
    """The workspace's invoices, newest first: those of its Stripe customer (none before it
    has one)."""
    access.require(Perm.BILLING_VIEW)
    customer = workspace_plan(workspace=access.workspace).stripe_customer_id
    found: QuerySet[Invoice] = Invoice.objects.filter(customer_id=customer)
    if not customer:
        found = Invoice.objects.none()
    return found.order_by("-created", "-djstripe_id")


def subscription_interval(subscription_id: str) -> str | None:
    """ "month" or "year": how often the subscription `subscription_id` bills (None without
    one, or before its webhook has been synced)."""
    if not subscription_id:
        return None
    found = Subscription.objects.filter(id=subscription_id).values_list("stripe_data", flat=True)
    data = found.first() or {}
    items = (data.get("items") or {}).get("data") or []
    price = (items[0].get("price") if items else None) or data.get("plan") or {}
    interval = (price.get("recurring") or {}).get("interval") or price.get("interval")
    return str(interval) if interval else None
