"""The platform's fee on a paid listing and how a charge is split.

Rounding rule (docs/decisions.md): the fee is the charge times the percent, rounded to the cent
half-up; the creator's share is the rest. So fee + share == charge for every amount and
percent, and neither is ever negative.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db.models import Q

from marketplace.models import FeeRule, Listing

HUNDRED = Decimal(100)


def fee_percent(listing: Listing) -> Decimal:
    """The fee a new purchase of `listing` pays: its category's rule, else the default rule,
    else `MARKETPLACE_FEE_PERCENT`."""
    rules = {
        rule.category_id: rule.percent
        # `category_id__in=[…, None]` would drop the None: SQL's IN never matches NULL.
        for rule in FeeRule.objects.filter(
            Q(category_id=listing.category_id) | Q(category__isnull=True)
        )
    }
    if listing.category_id in rules:
        return rules[listing.category_id]
    if None in rules:
        return rules[None]
    return Decimal(str(settings.MARKETPLACE_FEE_PERCENT))


def split(amount_cents: int, percent: Decimal) -> tuple[int, int]:
    """(platform fee, creator share) of a charge of `amount_cents`, both in cents."""
    if amount_cents < 0:
        raise ValueError("a charge is never negative")
    if not Decimal(0) <= percent <= HUNDRED:
        raise ValueError("a fee percent is between 0 and 100")
    fee = int((Decimal(amount_cents) * percent / HUNDRED).quantize(Decimal(1), ROUND_HALF_UP))
    return fee, amount_cents - fee
