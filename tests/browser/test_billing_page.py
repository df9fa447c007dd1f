"""The Billing page on a phone (390 px) and a desk (1280 px): nothing pushes the page sideways,
the usage bars are exposed as labelled progress bars, every Upgrade button is reachable, and
the test-mode banner shows. Screenshots land in the test's tmp_path."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import schema_context
from djstripe.models import Customer, Invoice
from playwright.sync_api import Browser

from agents.models import UsageRecord
from billing.demo import seed_demo_plans
from billing.models import WorkspacePlan
from billing.plans import default_plan
from tests.helpers.browser import signed_in
from tests.helpers.personas import World

pytestmark = pytest.mark.browser

_EXTRA_WIDTH = "document.documentElement.scrollWidth - window.innerWidth"
# The innermost elements reaching past the window's right edge, to say what overflows.
_WIDEST = """() => {
  const wide = [...document.querySelectorAll("main *")].filter(
    (el) => el.getBoundingClientRect().right > window.innerWidth + 1
  );
  return wide
    .filter((el) => !wide.some((other) => other !== el && el.contains(other)))
    .slice(0, 4)
    .map((el) => el.tagName.toLowerCase() + "." + [...el.classList].join("."));
}"""


def test_the_billing_page_fits_a_phone_and_a_desk(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path, settings: Any
) -> None:
    settings.STRIPE_TEST_SECRET_KEY = "sk_test_browser000000000000000000000"
    settings.STRIPE_LIVE_MODE = False
    world = committed_world
    seed_demo_plans()
    plan = default_plan()
    plan.runs_per_month = 200
    plan.save(update_fields=["runs_per_month"])
    customer = Customer.objects.create(id="cus_browser", livemode=False, stripe_data={})
    WorkspacePlan.objects.filter(workspace=world.workspace_a).update(
        runs_used=170, stripe_customer_id=customer.id
    )
    Invoice.objects.create(
        id="in_browser0001",
        customer=customer,
        livemode=False,
        created=timezone.now(),
        stripe_data={
            "number": "A1B2C3D4-0001",
            "currency": "usd",
            "total": 2900,
            "status": "paid",
            "hosted_invoice_url": "https://invoice.stripe.test/in_browser0001",
        },
    )
    with schema_context(world.workspace_a.schema_name):
        UsageRecord.objects.create(
            kind="anthropic", model="claude", outcome="ok", cost_usd=Decimal("1.20")
        )
    url = reverse("billing", kwargs={"workspace_slug": world.workspace_a.slug})

    for width in (390, 1280):
        context = signed_in(browser, world.owner, live_server.url, width)
        page = context.new_page()
        page.goto(url)
        page.screenshot(path=str(tmp_path / f"billing-{width}.png"), full_page=True)

        wide = page.evaluate(_WIDEST)
        assert page.evaluate(_EXTRA_WIDTH) <= 0, f"wider than {width} px: {wide}"
        assert page.get_by_text("Billing test mode — no real money").is_visible()
        runs = page.get_by_role("progressbar", name="Runs")
        assert runs.get_attribute("aria-valuenow") == "85"
        assert page.get_by_role("progressbar", name="AI spend").get_attribute("aria-valuenow") == (
            "100"
        )
        upgrades = page.get_by_role("button", name="Upgrade to Pro, $29.00 a month")
        upgrades.scroll_into_view_if_needed()
        assert upgrades.is_visible()
        assert page.get_by_role("link", name="View invoice A1B2C3D4-0001 on Stripe").is_visible()
        context.close()


def test_the_billing_off_and_payment_failed_banners_fit_a_phone(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path, settings: Any
) -> None:
    settings.STRIPE_TEST_SECRET_KEY = ""
    settings.STRIPE_LIVE_SECRET_KEY = ""
    settings.STRIPE_LIVE_MODE = False
    world = committed_world
    WorkspacePlan.objects.filter(workspace=world.workspace_a).update(
        status=WorkspacePlan.Status.PAST_DUE,
        grace_ends_at=timezone.now(),
        cancel_at_period_end=True,
    )
    url = reverse("billing", kwargs={"workspace_slug": world.workspace_a.slug})

    context = signed_in(browser, world.owner, live_server.url, 390)
    page = context.new_page()
    page.goto(url)
    page.screenshot(path=str(tmp_path / "billing-off-390.png"), full_page=True)

    assert page.evaluate(_EXTRA_WIDTH) <= 0, page.evaluate(_WIDEST)
    assert page.get_by_text("Billing is off.").is_visible()
    assert page.get_by_role("alert").filter(has_text="The last payment failed.").is_visible()
    context.close()


def test_upgrade_takes_the_browser_to_stripe_checkout_under_the_pages_csp(
    committed_world: World, live_server: Any, browser: Browser, fake_stripe: Any
) -> None:
    """Upgrade posts to us and is redirected to Stripe's hosted Checkout: the policy's
    `form-action` must allow that origin, or the browser stops on our page."""
    from billing.stripe_client import stripe_client
    from billing.stripe_sync import plans_sync

    world = committed_world
    seed_demo_plans()
    plans_sync(stripe_client())
    url = reverse("billing", kwargs={"workspace_slug": world.workspace_a.slug})
    context = signed_in(browser, world.owner, live_server.url, 1280)
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text))
    page.goto(url)
    page.get_by_role("button", name="Upgrade to Pro, $29.00 a month").click()
    page.wait_for_url(f"{fake_stripe.base_url}/test/checkout/**", timeout=15_000)
    assert page.get_by_text("Pro").first.is_visible()
    assert not [text for text in blocked if "Content Security Policy" in text]
    context.close()
