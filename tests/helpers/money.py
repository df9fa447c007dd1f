"""A paid listing's seller and buyer in tests of creators' money (issue 15)."""

from __future__ import annotations

import itertools
import urllib.parse
import urllib.request
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from marketplace.models import Category, CreatorAccount, Listing, Publisher, Purchase
from tenants.models import Workspace
from tests.helpers.marketplace import make_listing

_counter = itertools.count()


@dataclass
class Shop:
    publisher: Publisher
    creator: CreatorAccount
    listing: Listing


def make_shop(*, workspace: Workspace, account: str = "acct_creator000001") -> Shop:
    """Workspace `workspace` publishes a one-time paid listing, with an onboarded creator
    account `account` (transfers capability active). When the Stripe fake is running
    (`settings.STRIPE_API_BASE` on loopback), the account exists there too, onboarded: the fake
    refuses transfers to an account it does not have, as Stripe does."""
    number = next(_counter)
    publisher = Publisher.objects.create(
        workspace=workspace, slug=f"seller-{number}", display_name=f"Seller {number}"
    )
    creator = CreatorAccount.objects.create(
        publisher=publisher,
        stripe_account_id=account,
        country="US",
        default_currency="usd",
        details_submitted=True,
        payouts_enabled=True,
        transfers_active=True,
    )
    _at_the_fake(account)
    category, _ = Category.objects.get_or_create(slug="money", defaults={"name": "Money"})
    listing = make_listing(
        publisher=publisher,
        category=category,
        title=f"Invoice chaser {number}",
        slug=f"invoice-chaser-{number}",
        pricing=Listing.Pricing.ONE_TIME,
        price_cents=2500,
        index=False,
    )
    return Shop(publisher, creator, listing)


def _at_the_fake(account: str) -> None:
    """The connected account `account` at the running Stripe fake, onboarded (its test-only
    `POST /test/connect/accounts/{id}`); nothing when Stripe is not the fake."""
    base = str(getattr(settings, "STRIPE_API_BASE", ""))
    if urllib.parse.urlsplit(base).hostname not in ("127.0.0.1", "localhost"):
        return
    request = urllib.request.Request(f"{base}/test/connect/accounts/{account}", method="POST")  # noqa: S310 - the loopback fake
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - the loopback fake
        assert answer.status == 200


def make_purchase(
    shop: Shop, *, buyer: Workspace, amount: int = 2500, fee: str = "20", intent: str = ""
) -> Purchase:
    assert shop.listing.current_version is not None
    return Purchase.objects.create(
        buyer=buyer,
        listing=shop.listing,
        version=shop.listing.current_version,
        publisher=shop.publisher,
        pricing=Purchase.Pricing.ONE_TIME,
        unit_amount_cents=amount,
        fee_percent=Decimal(fee),
        status=Purchase.Status.ACTIVE,
        stripe_payment_intent_id=intent,
    )
