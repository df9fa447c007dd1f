"""The Earnings page of a creator who earned in two currencies and whose bank payout failed, on
a phone (390 px) and a desk (1280 px): nothing pushes the page sideways, each currency's
balances and the failed payout's notice with what to do show. Screenshots land in the test's
tmp_path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Browser

from marketplace import earnings
from marketplace.connect import bank_payout_sync
from marketplace.payouts import payouts_run
from tests.fakes import FakeStripe
from tests.helpers.browser import signed_in
from tests.helpers.money import make_purchase, make_shop
from tests.helpers.personas import World

pytestmark = pytest.mark.browser

_EXTRA_WIDTH = "document.documentElement.scrollWidth - window.innerWidth"


def test_two_currencies_and_a_failed_bank_payout_fit_a_phone_and_a_desk(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path, settings: Any
) -> None:
    world = committed_world
    with FakeStripe() as fake:
        settings.STRIPE_TEST_SECRET_KEY = "sk_test_" + "platform" * 3
        settings.STRIPE_API_BASE = fake.base_url
        shop = make_shop(workspace=world.workspace_a)
        now = timezone.now()
        for buyer, currency, gross in (
            (world.workspace_b, "usd", 4900),
            (world.workspace_a, "eur", 2500),
        ):
            purchase = make_purchase(shop, buyer=buyer, amount=gross)
            purchase.currency = currency
            purchase.save(update_fields=["currency"])
            charge = fake.add_charge(gross, currency)
            earnings.sale_record(
                purchase=purchase,
                gross_cents=gross,
                stripe_ref=charge["id"],
                occurred_at=now - timedelta(days=9),
            )
        earnings.earnings_release()
        payouts_run()
        failed = fake.pay_out(shop.creator.stripe_account_id, failure_code="account_closed")
        bank_payout_sync(
            account_id=shop.creator.stripe_account_id,
            payout={**failed, "created": int(datetime.now(UTC).timestamp())},
        )
    url = reverse("marketplace_earnings", kwargs={"workspace_slug": world.workspace_a.slug})

    for width in (390, 1280):
        context = signed_in(browser, world.owner, live_server.url, width)
        page = context.new_page()
        page.goto(url)
        page.screenshot(path=str(tmp_path / f"earnings-currencies-{width}.png"), full_page=True)
        assert page.evaluate(_EXTRA_WIDTH) <= 0
        assert page.locator("#balance-paid").inner_text() == "$39.20"
        assert page.locator("#balance-paid-eur").inner_text() == "20.00 EUR"
        notice = page.locator("#bank-payout-failed")
        assert notice.is_visible()
        assert "Your bank account has been closed." in notice.inner_text()
        context.close()
