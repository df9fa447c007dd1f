"""How a listing's price reads, and the notice every paid listing carries while checkout is off.

Invariant: while billing is off (`checkout_active()` false: no Stripe key), no paid listing is
charged for anything (installs and runs are free), and wherever a paid listing is offered or an
installed copy of one is run, the page says so (`billing_notice`). With billing on, a paid
listing is bought through Stripe Checkout (marketplace/purchases.py) and its copies run only
with a runnable purchase.
"""

from __future__ import annotations

from django.urls import reverse

from billing.stripe_client import stripe_mode
from core.exceptions import ApplicationError
from marketplace.models import PURCHASE_RUNNABLE, Listing, ListingVersion, Purchase


def checkout_active() -> bool:
    """Paid listings are sold (and their copies gated) only while billing is on."""
    return stripe_mode() != "off"


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
    if checkout_active() or listing.pricing == Listing.Pricing.FREE:
        return ""
    return (
        f"Billing is not active yet: this listing's price ({_price_terms(listing)}) is not "
        "charged. Installing and running it is free for now."
    )


def per_run_notice(purchase: Purchase | None) -> str:
    """What the run form of a copy says before every run when its workspace's runnable purchase
    (`purchase`) is per run: that purchase's price, which is what each run is charged (an
    upgrade to a version at another price or pricing keeps the purchase). "" for a one-time or
    monthly purchase (whatever the copy's version says), none, or while checkout is off."""
    if purchase is None or purchase.pricing != Purchase.Pricing.PER_RUN or not checkout_active():
        return ""
    return (
        f"{price_terms(purchase)}, added to this workspace's next invoice (an answer from the "
        "response cache is a successful run too); failed and cancelled runs are not charged."
    )


class PurchaseRequired(ApplicationError):
    """A paid listing used without a runnable purchase: HTTP 402, naming how to buy."""

    code = "purchase_required"
    status = 402


def price_terms(sold: Purchase | ListingVersion) -> str:
    """ "$19.00 one-time", "$9.00 a month" or "$0.25 per successful run"."""
    cents = sold.unit_amount_cents if isinstance(sold, Purchase) else sold.price_cents
    amount = f"${cents / 100:,.2f}"
    terms: dict[str, str] = {
        Listing.Pricing.ONE_TIME: f"{amount} one-time",
        Listing.Pricing.MONTHLY: f"{amount} a month",
        Listing.Pricing.PER_RUN: f"{amount} per successful run",
    }
    return terms.get(sold.pricing, amount)


def listing_path(listing: Listing) -> str:
    return reverse("marketplace_listing", kwargs={"slug": listing.slug})


def install_require_purchase(*, workspace_id: int, version: ListingVersion) -> None:
    """PurchaseRequired when `version` is paid, billing is on and the workspace has no runnable
    purchase of its listing (the install a payment completes comes after the payment)."""
    if version.pricing == Listing.Pricing.FREE or not checkout_active():
        return
    runnable = PURCHASE_RUNNABLE
    if Purchase.objects.filter(
        buyer_id=workspace_id, listing_id=version.listing_id, status__in=runnable
    ).exists():
        return
    raise PurchaseRequired(
        f"“{version.listing.title}” is a paid listing ({price_terms(version)}): an owner or "
        f"admin buys it first on {listing_path(version.listing)}, and the purchase installs it."
    )
