"""Mirror plans to Stripe: one Product per paid plan and a monthly and a yearly Price found by
lookup key (`plan.lookup_key("month")`). Idempotent: a price that already has the plan's amount
is kept; a changed amount creates a new Price and moves the lookup key to it (Stripe Prices
cannot change amount; subscriptions on the old one keep it until changed). Free plans have
nothing to mirror. Every write carries an idempotency key derived from our ids."""

from __future__ import annotations

from dataclasses import dataclass, field

import stripe

from billing.models import Plan

INTERVALS = ("month", "year")


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)  # lookup keys of new prices
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # plan keys with nothing to mirror


def _amount(plan: Plan, interval: str) -> int:
    return plan.monthly_price_cents if interval == "month" else plan.yearly_price_cents


def _product(client: stripe.StripeClient, plan: Plan) -> str:
    if plan.stripe_product_id:
        client.v1.products.update(
            plan.stripe_product_id,
            params={
                "name": plan.name,
                "description": plan.description,
                "metadata": {"plan_key": plan.key},
            },
        )
        return plan.stripe_product_id
    product = client.v1.products.create(
        params={
            "name": plan.name,
            "description": plan.description,
            "metadata": {"plan_key": plan.key},
        },
        options={"idempotency_key": f"plan-product-{plan.pk}"},
    )
    plan.stripe_product_id = product.id
    plan.save(update_fields=["stripe_product_id", "updated_at"])
    return product.id


def plan_sync(client: stripe.StripeClient, plan: Plan, report: SyncReport) -> None:
    if plan.is_free:
        report.skipped.append(plan.key)
        return
    product_id = _product(client, plan)
    keys = [plan.lookup_key(interval) for interval in INTERVALS]
    existing = {
        price.lookup_key: price
        for price in client.v1.prices.list(params={"lookup_keys": keys, "limit": 10}).data
    }
    for interval in INTERVALS:
        key, amount = plan.lookup_key(interval), _amount(plan, interval)
        price = existing.get(key)
        if price is not None and price.unit_amount == amount and price.product == product_id:
            report.unchanged.append(key)
            continue
        client.v1.prices.create(
            params={
                "product": product_id,
                "currency": "usd",
                "unit_amount": amount,
                "recurring": {"interval": interval},
                "lookup_key": key,
                "transfer_lookup_key": True,
                "metadata": {"plan_key": plan.key},
            },
            options={"idempotency_key": f"plan-price-{plan.pk}-{interval}-{amount}"},
        )
        report.created.append(key)


def plans_sync(client: stripe.StripeClient) -> SyncReport:
    report = SyncReport()
    for plan in Plan.objects.order_by("sort_order", "key"):
        plan_sync(client, plan, report)
    return report
