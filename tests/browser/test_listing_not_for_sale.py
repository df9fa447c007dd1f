"""A paid listing whose publisher can no longer be paid (Stripe restricted their payouts
account), in a browser at 1280 and 390 px: the listing says it is not available to buy right now
where the buy button was, and nothing pushes the page sideways. Screenshots land in the test's
tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import Browser, expect

from marketplace.models import Category, CreatorAccount, Listing, Publisher
from tests.fakes import FakeStripe
from tests.helpers.browser import signed_in
from tests.helpers.marketplace import make_listing
from tests.helpers.personas import World

pytestmark = pytest.mark.browser

_EXTRA_WIDTH = "document.documentElement.scrollWidth - window.innerWidth"


def test_a_restricted_publishers_listing_says_it_cannot_be_bought(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path, settings: Any
) -> None:
    with FakeStripe() as fake:
        settings.STRIPE_TEST_SECRET_KEY = "sk_test_" + "platform" * 3
        settings.STRIPE_LIVE_MODE = False
        settings.STRIPE_API_BASE = fake.base_url
        publisher = Publisher.objects.create(
            workspace=committed_world.workspace_a, slug="alpha-tools", display_name="Alpha Tools"
        )
        category = Category.objects.create(slug="support", name="Support")
        listing = make_listing(
            publisher=publisher,
            category=category,
            title="Meeting minutes with a rather long name for a small phone",
            pricing=Listing.Pricing.ONE_TIME,
            price_cents=900,
            index=False,
        )
        assert listing.current_version is not None
        type(listing.current_version).objects.filter(pk=listing.current_version.pk).update(
            pricing=Listing.Pricing.ONE_TIME, price_cents=900
        )
        CreatorAccount.objects.create(
            publisher=publisher,
            stripe_account_id="acct_restricted",
            details_submitted=True,
            payouts_enabled=False,
            transfers_active=False,
            disabled_reason="requirements.past_due",
        )
        url = reverse("marketplace_listing", kwargs={"slug": listing.slug})
        for width in (1280, 390):
            context = signed_in(browser, committed_world.outsider, live_server.url, width=width)
            page = context.new_page()
            page.goto(url)
            note = page.locator(".mk-unavailable")
            expect(note).to_have_text(
                "Not available to buy right now: the publisher's payouts are not set up."
            )
            expect(page.get_by_role("button", name="Buy and install")).to_have_count(0)
            page.screenshot(
                path=str(tmp_path / f"listing-not-for-sale-{width}.png"), full_page=True
            )
            assert page.evaluate(_EXTRA_WIDTH) <= 0
            context.close()
    assert fake.server_errors == []
