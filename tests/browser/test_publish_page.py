"""The Publish page in a browser, on a phone (390 px) and a desk (1280 px): a creator sets up
payouts through the (fake) Stripe onboarding page and comes back to "Set up"; the platform fee
and their share update as they pick the category and type a price; nothing pushes the page
sideways. Screenshots land in the test's tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import reverse
from djstripe.models import WebhookEndpoint
from playwright.sync_api import Browser, expect

from marketplace.models import Category, CreatorAccount, FeeRule
from tests.fakes import FakeStripe
from tests.helpers.billing import workers_run
from tests.helpers.browser import signed_in
from tests.helpers.personas import World

pytestmark = pytest.mark.browser

_EXTRA_WIDTH = "document.documentElement.scrollWidth - window.innerWidth"


@pytest.fixture
def stripe_fake(committed_world: World, live_server: Any, settings: Any) -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        fake.after_delivery = workers_run  # the platform's workers process each delivery
        settings.STRIPE_TEST_SECRET_KEY = "sk_test_" + "platform" * 3
        settings.STRIPE_LIVE_MODE = False
        settings.STRIPE_API_BASE = fake.base_url
        call_command("billing_webhook_endpoint", url=live_server.url, stdout=StringIO())
        connect_endpoint = WebhookEndpoint.objects.get(metadata__endpoint="connect")
        assert "account.updated" in fake.objects[connect_endpoint.id]["enabled_events"]
        yield fake
    assert fake.server_errors == []


def test_a_creator_sets_up_payouts_and_prices_a_version(
    committed_world: World,
    live_server: Any,
    browser: Browser,
    stripe_fake: FakeStripe,
    tmp_path: Path,
) -> None:
    Category.objects.create(slug="finance", name="Finance")
    FeeRule.objects.create(category=None, percent=Decimal("20"))
    url = reverse("marketplace_publish", kwargs={"workspace_slug": "alpha"})
    context = signed_in(browser, committed_world.owner, live_server.url)
    page = context.new_page()
    page.goto(url)
    page.screenshot(path=str(tmp_path / "publish-before-payouts-1280.png"), full_page=True)

    page.get_by_label("Country").select_option("GB")
    page.get_by_role("button", name="Set up payouts").click()
    expect(page.get_by_text("Billing test mode — no real money")).to_be_visible()
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("Payouts are set up: you can publish paid versions.")).to_be_visible()
    expect(page.locator("#payouts")).to_contain_text("Your payouts account is ready")
    assert CreatorAccount.objects.get().onboarded

    page.get_by_label("Category").select_option("finance")
    page.get_by_label("Price model").select_option("monthly")
    page.locator("#id_price").fill("9")
    fee = page.locator("#publish-fee")
    expect(fee).to_contain_text("At $9.00 per month: the platform keeps $1.80, you receive $7.20")
    expect(fee).to_contain_text("in Finance")
    page.screenshot(path=str(tmp_path / "publish-1280.png"), full_page=True)
    assert page.evaluate(_EXTRA_WIDTH) <= 0
    context.close()

    phone = signed_in(browser, committed_world.owner, live_server.url, width=390)
    small = phone.new_page()
    small.goto(url)
    expect(small.locator("#payouts")).to_contain_text("Your payouts account is ready")
    small.get_by_label("Price model").select_option("per_run")
    small.locator("#id_price").fill("0.75")
    expect(small.locator("#publish-fee")).to_contain_text("At $0.75 per successful run")
    small.screenshot(path=str(tmp_path / "publish-390.png"), full_page=True)
    assert small.evaluate(_EXTRA_WIDTH) <= 0

    # Stripe later needs more: the panel lists it and offers to continue
    stripe_fake.require(
        CreatorAccount.objects.get().stripe_account_id,
        ["individual.dob.day", "external_account"],
        disabled_reason="requirements.past_due",
    )
    small.reload()
    payouts = small.locator("#payouts")
    expect(payouts).to_contain_text("a bank account to receive payouts")
    expect(payouts.get_by_role("button", name="Continue setup")).to_be_visible()
    payouts.screenshot(path=str(tmp_path / "payouts-due-390.png"))
    assert small.evaluate(_EXTRA_WIDTH) <= 0
    phone.close()
