"""The demo's paid listing (`manage.py seed_demo_shop`, run by `manage.py dev` against the
Stripe emulator; here the loopback fake): a creator's workspace with an onboarded payouts
account sells "Meeting Minutes Pro" at $9.00, an example customer bought it through the
test-mode Checkout, so the creator's Earnings page shows a pending sale; the demo workspace
has not bought it (the newcomer's to try). Safe to run again; nothing without test mode."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from accounts.models import User
from marketplace.demo import DEMO_CREATOR_SLUG, seed_demo_shop
from marketplace.earnings import balances
from marketplace.models import Listing, Purchase
from tests.fakes import FakeStripe
from tests.helpers.personas import World

pytestmark = pytest.mark.django_db


def test_the_demo_shop_sells_a_paid_listing_with_one_example_sale(
    world: World, fake_stripe: FakeStripe
) -> None:
    staff = User.objects.create_superuser(email="admin@demo.test", password="x")
    shop = seed_demo_shop(owner=world.owner, staff=staff)
    assert shop is not None
    assert shop.sold
    listing = Listing.objects.get(pk=shop.listing.pk)
    assert listing.is_public
    assert (listing.pricing, listing.price_cents) == ("one_time", 900)
    assert listing.publisher.creator_account.onboarded
    assert shop.creator.slug == DEMO_CREATOR_SLUG
    sold = Purchase.objects.get(listing=listing)
    assert sold.status == Purchase.Status.ACTIVE
    assert sold.buyer != world.workspace_a  # the newcomer's own workspace can still buy it
    assert balances(publisher_id=listing.publisher_id)["pending"] == 720  # $9 less the 20 % fee

    again = seed_demo_shop(owner=world.owner, staff=staff)
    assert again is not None
    assert again.listing == listing
    assert Purchase.objects.filter(listing=listing).count() == 1
    assert balances(publisher_id=listing.publisher_id)["pending"] == 720


def test_without_stripe_test_mode_there_is_no_paid_demo_listing(
    world: World, settings: Any
) -> None:
    settings.STRIPE_TEST_SECRET_KEY = ""
    staff = User.objects.create_superuser(email="admin@demo.test", password="x")
    assert seed_demo_shop(owner=world.owner, staff=staff) is None
    out = StringIO()
    User.objects.filter(pk=world.owner.pk).update(email="owner@demo.local")
    User.objects.filter(pk=staff.pk).update(email="admin@demo.local")
    call_command("seed_demo_shop", stdout=out)
    assert "not in Stripe test mode" in out.getvalue()
    assert not Listing.objects.filter(title="Meeting Minutes Pro").exists()
