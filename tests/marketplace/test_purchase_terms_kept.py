"""A running purchase keeps the terms it was bought at: after staff raise the platform fee and
the creator publishes a new version at a new price, the next monthly renewal still charges the
purchase's price and takes the purchase's fee; a new purchase would pay the new ones."""

from __future__ import annotations

from decimal import Decimal

from marketplace import fees, services
from marketplace.models import FeeRule, Listing, ListingVersion
from tests.helpers.personas import access_of
from tests.helpers.purchases import Shop, sale


def test_a_monthly_renewal_keeps_the_purchases_price_and_fee(shop: Shop) -> None:
    FeeRule.objects.create(category=None, percent=Decimal("20"))
    listing = shop.listing("monthly", 900)
    purchase = shop.buy(listing)
    assert (purchase.unit_amount_cents, purchase.fee_percent) == (900, Decimal("20.00"))
    first = sale(shop.fake.get(purchase.stripe_subscription_id)["latest_invoice"])
    assert (first.gross_cents, first.fee_cents) == (900, 180)

    # staff raise the fee; the creator publishes version 2 at $15.00 a month, approved
    FeeRule.objects.filter(category=None).update(percent=Decimal("50"))
    source = ListingVersion.objects.get(listing=listing, number=1)
    assert source.source_id is not None
    version = services.listing_publish(
        access=access_of(shop.world.owner, shop.world.workspace_a),
        kind="agent",
        source_id=source.source_id,
        title=listing.title,
        summary=listing.summary,
        category_slug=listing.category.slug,
        pricing="monthly",
        price_cents=1500,
    )
    services.version_approve(user=shop.staff, version=version)
    listing = Listing.objects.get(pk=listing.pk)
    assert (listing.pricing, listing.price_cents) == ("monthly", 1500)
    assert fees.fee_percent(listing) == Decimal("50.00")  # what a new purchase would pay

    # the next month is charged at the purchase's terms
    invoice = shop.fake.close_period(purchase.stripe_subscription_id)
    assert invoice is not None
    renewal = sale(invoice["id"])
    assert (renewal.gross_cents, renewal.fee_cents, renewal.amount_cents) == (900, 180, 720)
    purchase.refresh_from_db()
    assert (purchase.unit_amount_cents, purchase.fee_percent) == (900, Decimal("20.00"))
