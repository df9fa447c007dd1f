"""`manage.py billing_sync_plans` mirrors paid plans to Stripe (the loopback fake, through the
real SDK): a Product per plan and monthly and yearly Prices by lookup key; running it again
changes nothing; a new amount gets a new Price that takes over the lookup key; without a key
it says billing is off."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
import stripe
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.demo import seed_demo_plans
from billing.models import Plan
from tests.fakes import FakeStripe
from tests.helpers.personas import World

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake_stripe(settings: Any) -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        settings.STRIPE_TEST_SECRET_KEY = "sk_test_platform"
        settings.STRIPE_API_BASE = fake.base_url
        yield fake
    assert fake.server_errors == []


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
    assert "4 price(s) created" in first
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
    assert "0 price(s) created, 4 kept" in second
    creates = [r for r in fake_stripe.requests if r.method == "POST" and r.path == "/v1/prices"]
    assert len(creates) == 4


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
