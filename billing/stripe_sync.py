"""Mirror plans to Stripe: one Product per paid plan and a monthly and a yearly Price found by
lookup key (`plan.lookup_key("month")`). Idempotent: a price that already has the plan's amount
is kept; a changed amount creates a new Price and moves the lookup key to it (Stripe Prices
cannot change amount; subscriptions on the old one keep it until changed). Free plans have
nothing to mirror. Every write carries an idempotency key derived from our ids.

Metered overage (billing/meter.py): one Billing Meter for AI spend (event `ai_spend_micro_usd`,
sum of whole micro-dollars of model cost, customer by the `stripe_customer_id` payload key),
and per plan that allows overage a metered monthly Price `plan.lookup_key("overage")` on it,
graduated: the plan's included AI spend free, then model cost times BILLING_OVERAGE_MARKUP. A
subscription carries it beside the plan's price, so Stripe's invoice charges only the overage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import stripe
from django.conf import settings

from billing.meter import (
    AI_SPEND_EVENT,
    AI_SPEND_METER_NAME,
    CUSTOMER_KEY,
    meter_find,
    micro_usd,
)
from billing.models import Plan
from core.exceptions import ValidationFailed

INTERVALS = ("month", "year")


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)  # lookup keys of new prices
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # plan keys with nothing to mirror
    meter_created: bool = False


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


def meter_sync(client: stripe.StripeClient, report: SyncReport) -> str:
    """The id of the AI-spend meter, created the first time."""
    meter = meter_find(client, AI_SPEND_EVENT)
    if meter is not None:
        return meter.id
    created = client.v1.billing.meters.create(
        params={
            "display_name": AI_SPEND_METER_NAME,
            "event_name": AI_SPEND_EVENT,
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"type": "by_id", "event_payload_key": CUSTOMER_KEY},
            "value_settings": {"event_payload_key": "value"},
        },
        options={"idempotency_key": f"meter-{AI_SPEND_EVENT}"},
    )
    report.meter_created = True
    return created.id


def overage_unit_cents() -> str:
    """Cents per micro-dollar of model cost: 0.0001 at cost, times BILLING_OVERAGE_MARKUP
    (Stripe's `unit_amount_decimal`, at most 12 decimal places)."""
    try:
        markup = Decimal(str(settings.BILLING_OVERAGE_MARKUP))
        valid = markup.is_finite() and markup > 0
    except ArithmeticError:  # not a number
        valid = False
    if not valid:
        raise ValidationFailed(
            "BILLING_OVERAGE_MARKUP must be a number above 0 (1 = at cost, 1.2 = 20 % over), "
            f"not {settings.BILLING_OVERAGE_MARKUP!r}."
        )
    return f"{(Decimal('0.0001') * markup).quantize(Decimal('1e-12')).normalize():f}"


def _overage_price(
    client: stripe.StripeClient,
    plan: Plan,
    product_id: str,
    meter_id: str,
    existing: stripe.Price | None,
    report: SyncReport,
) -> None:
    key = plan.lookup_key("overage")
    included, unit = micro_usd(plan.included_ai_spend_usd), overage_unit_cents()
    terms = {"plan_key": plan.key, "included_micro_usd": str(included), "unit_cents": unit}
    if (
        existing is not None
        and existing.product == product_id
        and existing.recurring is not None
        and existing.recurring.meter == meter_id
        and {k: existing.metadata.to_dict().get(k) for k in terms} == terms
    ):
        report.unchanged.append(key)
        return
    # Graduated: the included spend free (a first tier needs a positive bound), then per unit.
    tiers: list[dict[str, object]] = [{"up_to": "inf", "unit_amount_decimal": unit}]
    if included:
        tiers.insert(0, {"up_to": included, "unit_amount": 0})
    client.v1.prices.create(
        params={
            "product": product_id,
            "currency": "usd",
            "nickname": f"{plan.name} AI spend overage",
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter_id},
            "billing_scheme": "tiered",
            "tiers_mode": "graduated",
            "tiers": tiers,  # type: ignore[typeddict-item]
            "lookup_key": key,
            "transfer_lookup_key": True,
            "metadata": terms,
        },
        options={"idempotency_key": f"plan-overage-{plan.pk}-{meter_id}-{included}-{unit}"},
    )
    report.created.append(key)


def plan_sync(
    client: stripe.StripeClient, plan: Plan, report: SyncReport, *, meter_id: str
) -> None:
    if plan.is_free:
        report.skipped.append(plan.key)
        return
    product_id = _product(client, plan)
    keys = [plan.lookup_key(interval) for interval in (*INTERVALS, "overage")]
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
    if plan.allows_overage:
        key = plan.lookup_key("overage")
        _overage_price(client, plan, product_id, meter_id, existing.get(key), report)


def plans_sync(client: stripe.StripeClient) -> SyncReport:
    report = SyncReport()
    meter_id = meter_sync(client, report)
    for plan in Plan.objects.order_by("sort_order", "key"):
        plan_sync(client, plan, report, meter_id=meter_id)
    return report
