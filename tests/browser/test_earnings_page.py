"""The Earnings page on a phone (390 px) and a desk (1280 px): nothing pushes the page
sideways, the balances, the chart and the payout's transfer show. Screenshots land in the
test's tmp_path."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Browser

from marketplace import earnings
from marketplace.payouts import payouts_run
from tests.fakes import FakeStripe
from tests.helpers.browser import signed_in
from tests.helpers.money import make_purchase, make_shop
from tests.helpers.personas import World

pytestmark = pytest.mark.browser

_EXTRA_WIDTH = "document.documentElement.scrollWidth - window.innerWidth"


def test_the_earnings_page_fits_a_phone_and_a_desk(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path, settings: Any
) -> None:
    world = committed_world
    with FakeStripe() as fake:
        settings.STRIPE_TEST_SECRET_KEY = "sk_test_" + "platform" * 3
        settings.STRIPE_API_BASE = fake.base_url
        shop = make_shop(workspace=world.workspace_a)
        now = timezone.now()
        for n, gross in enumerate([2500, 4900, 1500, 2500, 9900]):
            purchase = make_purchase(
                shop, buyer=world.workspace_b if n % 2 else world.workspace_a, amount=gross
            )
            charge = fake.add_charge(gross, "usd")
            earnings.sale_record(
                purchase=purchase,
                gross_cents=gross,
                stripe_ref=charge["id"],
                occurred_at=now - timedelta(days=[12, 9, 5, 2, 0][n]),
            )
            purchase.status = "ended"
            purchase.save(update_fields=["status"])
        earnings.earnings_release()
        payouts_run()
    url = reverse("marketplace_earnings", kwargs={"workspace_slug": world.workspace_a.slug})

    for width in (390, 1280):
        context = signed_in(browser, world.owner, live_server.url, width)
        page = context.new_page()
        page.goto(url)
        page.screenshot(path=str(tmp_path / f"earnings-{width}.png"), full_page=True)
        assert page.evaluate(_EXTRA_WIDTH) <= 0
        assert page.get_by_role("img", name="By day").is_visible()
        assert page.locator("#balance-paid").inner_text() == "$59.20"
        assert page.get_by_role("button", name="CSV statement").is_visible()
        context.close()
