"""How a listing's price reads, and the notice every paid listing carries while checkout does not
exist.

Invariant: until `CHECKOUT_ACTIVE` is true, no paid listing is charged for anything (installs and
runs are free), and wherever a paid listing is offered or an installed copy of one is run, the
page says so (`billing_notice`). Turning checkout on is one change here.
"""

from __future__ import annotations

from marketplace.models import Listing, ListingVersion

CHECKOUT_ACTIVE = False


def price_label(listing: Listing | ListingVersion) -> str:
    """ "Free", "$19.00", "$0.25 per run" or "$9.00 / month" (a listing's or a version's)."""
    if listing.pricing == Listing.Pricing.FREE:
        return "Free"
    amount = f"${listing.price_cents / 100:,.2f}"
    if listing.pricing == Listing.Pricing.PER_RUN:
        return f"{amount} per run"
    if listing.pricing == Listing.Pricing.MONTHLY:
        return f"{amount} / month"
    return amount


def _price_terms(listing: Listing) -> str:
    label = price_label(listing)
    return f"{label} one-time" if listing.pricing == Listing.Pricing.ONE_TIME else label


def billing_notice(listing: Listing) -> str:
    """What a person must be told about a paid listing's price; "" for a free one or once
    checkout exists."""
    if CHECKOUT_ACTIVE or listing.pricing == Listing.Pricing.FREE:
        return ""
    return (
        f"Billing is not active yet: this listing's price ({_price_terms(listing)}) is not "
        "charged. Installing and running it is free for now."
    )
