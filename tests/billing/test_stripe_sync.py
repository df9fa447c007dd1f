"""`manage.py billing_sync_plans` mirrors paid plans to Stripe (the loopback fake, through the
real SDK): a Product per plan and monthly and yearly Prices by lookup key; running it again
changes nothing; a new amount gets a new Price that takes over the lookup key; without a key
it says billing is off. It also creates the AI-spend Billing Meter once and, per plan that
allows overage, a metered graduated Price (`plan_<key>_overage`) whose free tier is the plan's
included AI spend."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
import stripe
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from accounts.models import User
from billing.demo import seed_demo_plans
from billing.models import Plan
from tests.fakes import FakeStripe
from tests.helpers.personas import World, logged_in

pytestmark = pytest.mark.django_db


def _prices(fake: FakeStripe) -> dict[str, int]:
    client = stripe.StripeClient(
        "sk_test_platform", base_addresses={"api": fake.base_url}, max_network_retries=0
    )
    keys = [f"plan_{k}_{i}" for k in ("pro", "team") for i in ("month", "year")]
    listed = client.v1.prices.list(params={"lookup_keys": keys, "limit": 10}).data
    return {p.lookup_key: p.unit_amount or 0 for p in listed if p.lookup_key}


def _sync() -> str:
    out = StringIO()
    call_command("billing_sync_plans", stdout=out)
    return out.getvalue()


def test_paid_plans_are_mirrored_by_lookup_key_and_a_second_run_changes_nothing(
    world: World, fake_stripe: FakeStripe
) -> None:
    seed_demo_plans()
    first = _sync()
    assert "created  meter ai_spend_micro_usd" in first
    assert "6 price(s) created" in first  # Pro and Team allow overage: an overage price each
    assert "skipped  free" in first
    assert _prices(fake_stripe) == {
        "plan_pro_month": 2900,
        "plan_pro_year": 29000,
        "plan_team_month": 9900,
        "plan_team_year": 99000,
    }
    pro = Plan.objects.get(key="pro")
    assert pro.stripe_product_id.startswith("prod_")

    second = _sync()
    assert "0 price(s) created, 6 kept" in second
    assert "created  meter" not in second
    creates = [r for r in fake_stripe.requests if r.method == "POST" and r.path == "/v1/prices"]
    assert len(creates) == 6
    meters = [r for r in fake_stripe.requests if r.method == "POST" and "/meters" in r.path]
    assert len(meters) == 1


def test_the_ai_spend_meter_and_the_overage_prices_charge_only_beyond_the_allowance(
    world: World, fake_stripe: FakeStripe
) -> None:
    seed_demo_plans()  # Pro includes $20 of AI spend and allows overage
    _sync()
    meter = next(o for o in fake_stripe.objects.values() if o["object"] == "billing.meter")
    assert meter["event_name"] == "ai_spend_micro_usd"
    assert meter["default_aggregation"] == {"formula": "sum"}
    assert meter["customer_mapping"]["event_payload_key"] == "stripe_customer_id"
    sent = next(
        r.body
        for r in fake_stripe.requests
        if r.path == "/v1/prices" and r.body.get("lookup_key") == "plan_pro_overage"
    )
    assert sent["recurring"] == {"interval": "month", "usage_type": "metered", "meter": meter["id"]}
    assert (sent["billing_scheme"], sent["tiers_mode"]) == ("tiered", "graduated")
    # $20 free (20,000,000 micro-dollars), then 0.0001 cents a micro-dollar: model cost at cost
    assert sent["tiers"] == [
        {"up_to": "20000000", "unit_amount": "0"},
        {"up_to": "inf", "unit_amount_decimal": "0.0001"},
    ]
    price = next(
        o for o in fake_stripe.objects.values() if o.get("lookup_key") == "plan_pro_overage"
    )
    assert price["product"] == Plan.objects.get(key="pro").stripe_product_id


def test_a_new_allowance_or_markup_gets_a_new_overage_price(
    world: World, fake_stripe: FakeStripe, settings: Any
) -> None:
    seed_demo_plans()
    _sync()
    settings.BILLING_OVERAGE_MARKUP = "1.2"
    assert "created  plan_pro_overage" in _sync()
    Plan.objects.filter(key="pro").update(included_ai_spend_usd=30)
    report = _sync()
    assert "created  plan_pro_overage" in report
    assert "kept     plan_team_overage" in report
    overage = [o for o in fake_stripe.objects.values() if o.get("lookup_key") == "plan_pro_overage"]
    assert len(overage) == 1  # the key moved to the newest price
    assert overage[0]["metadata"] == {
        "plan_key": "pro",
        "included_micro_usd": "30000000",
        "unit_cents": "0.00012",
    }


def test_a_new_amount_gets_a_new_price_that_takes_over_the_lookup_key(
    world: World, fake_stripe: FakeStripe
) -> None:
    seed_demo_plans()
    _sync()
    Plan.objects.filter(key="pro").update(monthly_price_cents=3900)
    report = _sync()
    assert "created  plan_pro_month" in report
    assert _prices(fake_stripe)["plan_pro_month"] == 3900


def test_without_a_stripe_key_the_command_says_billing_is_off(world: World, settings: Any) -> None:
    settings.STRIPE_TEST_SECRET_KEY = ""
    with pytest.raises(CommandError, match="Billing is off: set STRIPE_TEST_SECRET_KEY"):
        _sync()


def test_a_markup_that_is_not_above_zero_is_refused_by_name(
    world: World, fake_stripe: FakeStripe, settings: Any
) -> None:
    seed_demo_plans()
    for markup in ("0", "cost plus"):
        settings.BILLING_OVERAGE_MARKUP = markup
        with pytest.raises(CommandError, match="BILLING_OVERAGE_MARKUP must be a number above 0"):
            _sync()


def test_staff_mirror_the_plans_from_the_admin_and_are_told_when_billing_is_off(
    world: World, fake_stripe: FakeStripe, settings: Any
) -> None:
    seed_demo_plans()
    staff = User.objects.create_superuser(email="staff@platform.test", password="x")
    client = logged_in(staff)
    changelist = reverse("admin:billing_plan_changelist")
    chosen = {"action": "mirror_to_stripe", "_selected_action": [Plan.objects.get(key="pro").pk]}
    page = client.post(changelist, chosen, follow=True).content.decode()
    assert "Plans mirrored to Stripe: new prices plan_pro_month" in page
    assert _prices(fake_stripe)["plan_team_year"] == 99000

    settings.STRIPE_TEST_SECRET_KEY = ""
    page = client.post(changelist, chosen, follow=True).content.decode()
    assert "Billing is off: set STRIPE_TEST_SECRET_KEY" in page
