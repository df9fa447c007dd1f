"""How plan figures read on the Billing page: cents as dollars, each meter in its unit."""

from __future__ import annotations

from decimal import Decimal

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma
from django.template.defaultfilters import filesizeformat

from billing.models import Plan
from billing.usage import KNOWLEDGE_STORAGE, Figure, Unit, plan_limit
from core.formatting import cost_text

register = template.Library()


@register.filter(name="cents")
def cents_filter(amount: int | None, currency: str = "usd") -> str:
    """2900 → $29.00 (another currency than USD is named: 2900 eur → 29.00 EUR)."""
    value = Decimal(amount or 0) / 100
    if (currency or "usd").lower() == "usd":
        return f"${value:,.2f}"
    return f"{value:,.2f} {currency.upper()}"


@register.filter(name="figure")
def figure_filter(value: Figure | None, unit: str) -> str:
    """A meter's figure in its unit: 1,200 runs, $4.50 of AI spend, 12.5 MB."""
    if value is None:
        return "unlimited"
    if unit == Unit.USD:
        return cost_text(value)
    if unit == Unit.BYTES:
        return str(filesizeformat(int(value)))
    return str(intcomma(int(value)))


@register.filter(name="plan_prices")
def plan_prices_filter(plan: Plan) -> list[tuple[str, int]]:
    """The (interval, cents) a plan can be bought at: monthly, and yearly when offered."""
    prices = [("month", plan.monthly_price_cents)]
    if plan.yearly_offered:
        prices.append(("year", plan.yearly_price_cents))
    return [(interval, cents) for interval, cents in prices if cents]


@register.filter(name="storage_allowance")
def storage_allowance_filter(plan: Plan) -> int | None:
    """The plan's knowledge storage in bytes (None: unlimited), for `figure:"bytes"`."""
    return plan_limit(plan, KNOWLEDGE_STORAGE)  # type: ignore[return-value]
