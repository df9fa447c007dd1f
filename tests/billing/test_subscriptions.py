"""Starting a subscription (the real stripe SDK against the loopback fake): Checkout in
subscription mode for the plan's Price by lookup key (plus its metered overage Price when
there is one), one Stripe customer per workspace, idempotency keys from our ids, and clear
refusals: an unknown, private or free plan, a plan not mirrored to Stripe, the plan already
active, billing off, Stripe unreachable. The customer portal needs a customer."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import stripe

from billing.demo import seed_demo_plans
from billing.models import Plan, WorkspacePlan
from billing.stripe_client import billing_mode, stripe_client
from billing.stripe_sync import plans_sync
from billing.subscriptions import CheckoutRefused, checkout_start, portal_start
from core.exceptions import ServiceUnavailable
from tests.fakes import FakeStripe
from tests.helpers.personas import World

pytestmark = pytest.mark.django_db

URLS = {"success_url": "https://app.test/ok", "cancel_url": "https://app.test/billing"}


@pytest.fixture
def synced(world: World, fake_stripe: FakeStripe) -> FakeStripe:
    seed_demo_plans()
    plans_sync(stripe_client())
    return fake_stripe


def _start(world: World, plan_key: str = "pro", interval: str = "month") -> str:
    return checkout_start(
        workspace_id=world.workspace_a.pk,
        plan_key=plan_key,
        interval=interval,
        actor_id=world.owner.pk,
        **URLS,
    )


def _posts(fake: FakeStripe, path: str) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path == path]


def test_checkout_is_a_subscription_session_for_the_plans_price_and_one_customer(
    world: World, synced: FakeStripe
) -> None:
    url = _start(world)
    assert url.startswith(f"{synced.base_url}/test/checkout/cs_test_")

    (session_request,) = _posts(synced, "/v1/checkout/sessions")
    params = session_request.body
    pro_month = synced.get(params["line_items"][0]["price"], "price")
    assert pro_month["lookup_key"] == "plan_pro_month"
    assert params["line_items"][0]["quantity"] == "1"
    # Pro bills overage: billing_sync_plans gave it a metered price, a line without quantity
    overage = params["line_items"][1]
    assert synced.get(overage["price"], "price")["lookup_key"] == "plan_pro_overage"
    assert "quantity" not in overage
    assert params["mode"] == "subscription"
    assert params["client_reference_id"] == str(world.workspace_a.pk)
    assert params["metadata"]["plan_key"] == "pro"
    assert params["subscription_data"]["metadata"]["workspace_id"] == str(world.workspace_a.pk)
    assert session_request.headers["idempotency-key"].startswith(
        f"workspace-{world.workspace_a.pk}-checkout-pro-month-"
    )

    row = WorkspacePlan.objects.get(workspace=world.workspace_a)
    assert row.plan.key == "free"  # the plan changes from the webhook only
    customer = synced.get(row.stripe_customer_id, "customer")
    assert customer["metadata"]["workspace_id"] == str(world.workspace_a.pk)
    (customer_request,) = _posts(synced, "/v1/customers")
    assert customer_request.headers["idempotency-key"] == (
        f"workspace-{world.workspace_a.pk}-customer"
    )

    _start(world)  # a second attempt reuses the customer
    assert len(_posts(synced, "/v1/customers")) == 1
    assert len(_posts(synced, "/v1/checkout/sessions")) == 2


def test_a_plan_without_overage_is_one_line_for_its_price(world: World, synced: FakeStripe) -> None:
    Plan.objects.create(
        key="solo",
        name="Solo",
        monthly_price_cents=900,
        yearly_price_cents=9000,
        runs_per_month=500,
    )
    plans_sync(stripe_client())
    _start(world, plan_key="solo")
    _start(world, plan_key="solo", interval="year")  # no overage: sold yearly too
    monthly, yearly = (r.body for r in _posts(synced, "/v1/checkout/sessions"))
    (line,) = monthly["line_items"]
    assert synced.get(line["price"], "price")["lookup_key"] == "plan_solo_month"
    assert line["quantity"] == "1"
    (line,) = yearly["line_items"]
    assert synced.get(line["price"], "price")["lookup_key"] == "plan_solo_year"


def test_a_plan_that_bills_overage_is_sold_monthly_only(world: World, synced: FakeStripe) -> None:
    """Stripe bills a subscription's items on one interval, and overage is metered monthly."""
    with pytest.raises(CheckoutRefused, match="Pro is paid monthly") as refused:
        _start(world, interval="year")
    assert refused.value.fields == {"interval": ["Monthly only for this plan."]}
    assert _posts(synced, "/v1/checkout/sessions") == []


@pytest.mark.parametrize(
    ("plan_key", "interval", "message"),
    [
        ("gold", "month", "There is no plan “gold”"),
        ("free", "month", "Free is free: there is nothing to pay"),
        ("pro", "week", "Unknown billing interval “week”"),
    ],
)
def test_an_unknown_or_free_plan_or_interval_is_refused(
    world: World, synced: FakeStripe, plan_key: str, interval: str, message: str
) -> None:
    with pytest.raises(CheckoutRefused, match=message):
        _start(world, plan_key, interval)
    assert _posts(synced, "/v1/checkout/sessions") == []


def test_a_private_plan_is_refused(world: World, synced: FakeStripe) -> None:
    Plan.objects.filter(key="team").update(is_public=False)
    with pytest.raises(CheckoutRefused, match="There is no plan “team”"):
        _start(world, "team")


def test_a_plan_not_mirrored_to_stripe_names_the_command(
    world: World, fake_stripe: FakeStripe
) -> None:
    seed_demo_plans()
    with pytest.raises(CheckoutRefused, match=r"run manage\.py billing_sync_plans") as refused:
        _start(world)
    assert "plan_pro_month" in refused.value.message
    assert _posts(fake_stripe, "/v1/customers") == []


def test_a_workspace_with_a_subscription_is_sent_to_the_portal_not_a_second_checkout(
    world: World, synced: FakeStripe
) -> None:
    WorkspacePlan.objects.filter(workspace=world.workspace_a).update(
        plan=Plan.objects.get(key="pro"), stripe_subscription_id="sub_x", status="active"
    )
    with pytest.raises(CheckoutRefused, match="already subscribed to Pro"):
        _start(world)
    with pytest.raises(CheckoutRefused, match="change it to Team with Manage payment"):
        _start(world, "team")
    WorkspacePlan.objects.filter(workspace=world.workspace_a).update(status="past_due")
    with pytest.raises(CheckoutRefused, match="payment for this workspace's Pro subscription"):
        _start(world, "team")
    assert _posts(synced, "/v1/checkout/sessions") == []


def test_a_second_checkout_expires_the_first_so_two_tabs_cannot_both_pay(
    world: World, synced: FakeStripe
) -> None:
    first = _start(world).rsplit("/", 1)[1]
    second = _start(world, "team").rsplit("/", 1)[1]
    assert synced.get(first, "checkout.session")["status"] == "expired"
    with pytest.raises(stripe.InvalidRequestError):  # the first tab's page can no longer pay
        stripe_client().v1.checkout.sessions.expire(first)
    synced.complete_checkout(second)
    subscriptions = [o for o in synced.objects.values() if o.get("object") == "subscription"]
    assert len(subscriptions) == 1


def test_a_checkout_after_one_was_just_paid_is_refused_until_the_webhook_lands(
    world: World, synced: FakeStripe
) -> None:
    paid = _start(world).rsplit("/", 1)[1]
    synced.complete_checkout(paid)  # paid at Stripe; the plan row has not heard of it yet
    with pytest.raises(CheckoutRefused, match="A checkout for this workspace was just paid"):
        _start(world, "team")
    assert len(_posts(synced, "/v1/checkout/sessions")) == 1


def test_billing_off_says_which_key_to_set(world: World, settings: Any) -> None:
    settings.STRIPE_TEST_SECRET_KEY = ""
    with pytest.raises(ServiceUnavailable, match="Billing is off: set STRIPE_TEST_SECRET_KEY"):
        _start(world)


def test_stripe_unreachable_is_a_503_not_a_500(world: World, settings: Any) -> None:
    seed_demo_plans()
    with socket.socket() as closed:  # a port nothing listens on once closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings.STRIPE_TEST_SECRET_KEY = "sk_test_platform"
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{port}"
    with pytest.raises(ServiceUnavailable, match="Stripe could not be reached") as refused:
        _start(world)
    assert refused.value.status == 503
    assert isinstance(refused.value.__cause__, stripe.APIConnectionError)


def test_the_portal_needs_a_customer_then_opens_for_it(world: World, synced: FakeStripe) -> None:
    with pytest.raises(CheckoutRefused, match="no payment details at Stripe yet"):
        portal_start(workspace_id=world.workspace_a.pk, return_url="https://app.test/billing")
    _start(world)
    url = portal_start(workspace_id=world.workspace_a.pk, return_url="https://app.test/billing")
    assert url.startswith(f"{synced.base_url}/test/portal/bps_")
    (portal_request,) = _posts(synced, "/v1/billing_portal/sessions")
    customer = WorkspacePlan.objects.get(workspace=world.workspace_a).stripe_customer_id
    assert portal_request.body["customer"] == customer


def test_the_grace_period_sweep_is_a_scheduled_task(settings: Any) -> None:
    from config.celery import app

    app.loader.import_default_modules()  # what a worker does on start (autodiscovery)
    entry = settings.CELERY_BEAT_SCHEDULE["billing-expire-grace"]
    assert entry["task"] in app.tasks


@pytest.mark.parametrize(
    ("key", "quotas", "said"),
    [
        ("", False, "Billing is off: no plan limits, no checkout (set STRIPE_TEST_SECRET_KEY"),
        ("sk_test_x", True, "Billing is on: Stripe test mode, no real money; plan limits on."),
        ("sk_test_x", False, "test mode, no real money; plan limits off (BILLING_QUOTAS)."),
    ],
)
def test_the_server_says_on_start_whether_billing_is_on(
    settings: Any, key: str, quotas: bool, said: str
) -> None:
    settings.STRIPE_TEST_SECRET_KEY, settings.BILLING_QUOTAS = key, quotas
    assert said in billing_mode()


def test_live_mode_says_real_money(settings: Any) -> None:
    settings.STRIPE_LIVE_MODE, settings.STRIPE_LIVE_SECRET_KEY = True, "sk_live_x"
    assert billing_mode().startswith("Billing is on: Stripe LIVE mode, real money")
