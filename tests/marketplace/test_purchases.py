"""Buying paid listings end to end: the real stripe SDK talks to the loopback fake, which posts
signed webhooks to dj-stripe's view on the running test server; our receivers
(marketplace/stripe_events.py) re-read Stripe and move the purchase forward.

One-time: checkout → paid → the purchase is active (from the webhook, not the redirect) →
installed → runs, one sale. Monthly: subscribe → runs → cancel → runs until the period ends
→ refused (402). Per run (tests/marketplace/test_per_run.py). Clear refusals: billing off, a
publisher not onboarded, Stripe down (503, no half-made purchase), a viewer."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from accounts.models import User
from agents.models import AgentRun
from core.exceptions import Conflict, PermissionDenied, ServiceUnavailable
from marketplace import services
from marketplace.models import (
    CreatorAccount,
    Install,
    Listing,
    ListingVersion,
    Purchase,
    Review,
)
from marketplace.pricing import PurchaseRequired
from marketplace.purchases import PurchaseRefused, purchase_cancel, purchase_start
from tenants.models import Membership, Role
from tests.helpers.billing import workers_run
from tests.helpers.personas import access_of
from tests.helpers.purchases import URLS, Shop, pay, sale


def test_one_time_checkout_activates_from_the_webhook_installs_and_runs(shop: Shop) -> None:
    listing = shop.listing("one_time", 1900)

    # given B's owner starts buying: a payment checkout for the version's price
    started = purchase_start(access=shop.buyer, listing=listing, **URLS)
    purchase = started.purchase
    assert purchase.status == Purchase.Status.PENDING
    assert (purchase.unit_amount_cents, purchase.fee_percent) == (1900, 20)
    (request,) = [r for r in shop.fake.requests if r.path == "/v1/checkout/sessions"]
    assert request.body["mode"] == "payment"
    assert request.body["line_items"][0]["price_data"]["unit_amount"] == "1900"
    assert request.body["payment_intent_data"]["transfer_group"] == f"purchase-{purchase.pk}"
    assert request.body["payment_intent_data"]["metadata"]["purchase_id"] == str(purchase.pk)
    assert request.headers["idempotency-key"] == f"purchase-{purchase.pk}-checkout"
    # not installable, not runnable, before paying
    with pytest.raises(PurchaseRequired, match="buys it first"):
        services.install(access=shop.buyer, listing=listing)

    # when the buyer pays, but Stripe's webhooks come later
    shop.fake.hold_events = True
    back = pay(str(started.checkout_url))
    assert back == URLS["success_url"]
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PENDING  # the redirect changes nothing

    # then the webhook activates it and installs the copy, which runs
    shop.fake.flush_events()
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.ACTIVE
    assert purchase.stripe_payment_intent_id.startswith("pi_")
    run = shop.run(shop.copy(listing))
    assert run.status == AgentRun.Status.SUCCEEDED, run.error
    # one sale, keyed by the charge, for the price paid
    intent = shop.client.v1.payment_intents.retrieve(purchase.stripe_payment_intent_id)
    assert sale(str(intent.latest_charge)).gross_cents == 1900

    # buying again is refused
    with pytest.raises(Conflict, match="already bought"):
        purchase_start(access=shop.buyer, listing=listing, **URLS)


def _new_price(listing: Listing, cents: int) -> None:
    """A later price on the version on sale (as an approved new version would carry)."""
    assert listing.current_version_id is not None
    ListingVersion.objects.filter(pk=listing.current_version_id).update(price_cents=cents)


def test_a_new_price_closes_the_earlier_checkout_so_it_cannot_be_paid(shop: Shop) -> None:
    listing = shop.listing("one_time", 1900)
    first = purchase_start(access=shop.buyer, listing=listing, **URLS)
    _new_price(listing, 2400)

    second = purchase_start(access=shop.buyer, listing=listing, **URLS)

    session = shop.fake.get(first.purchase.stripe_checkout_session_id, "checkout.session")
    assert session["status"] == "expired"
    assert Purchase.objects.get(pk=first.purchase.pk).status == Purchase.Status.ENDED
    assert second.purchase.unit_amount_cents == 2400
    pay(str(second.checkout_url))
    assert Purchase.objects.get(pk=second.purchase.pk).status == Purchase.Status.ACTIVE


def test_an_earlier_checkout_paid_but_not_yet_confirmed_is_not_sold_again(shop: Shop) -> None:
    listing = shop.listing("one_time", 1900)
    first = purchase_start(access=shop.buyer, listing=listing, **URLS)
    shop.fake.hold_events = True  # paid at Stripe; its webhook has not arrived
    pay(str(first.checkout_url))
    _new_price(listing, 2400)

    with pytest.raises(Conflict, match="was just paid"):
        purchase_start(access=shop.buyer, listing=listing, **URLS)

    shop.fake.flush_events()
    assert Purchase.objects.get(pk=first.purchase.pk).status == Purchase.Status.ACTIVE
    assert Purchase.objects.filter(listing=listing).count() == 1


def test_a_paid_invoice_delivered_before_the_others_about_it_is_still_a_sale(shop: Shop) -> None:
    """The workers coalesce events about one object in a batch; `invoice.paid` is never the
    one left out, whatever order Stripe delivers in."""
    listing = shop.listing("monthly", 900)
    purchase = shop.buy(listing)
    shop.fake.after_delivery = None  # delivered and queued; processed below, as one batch
    shop.fake.hold_events = True
    invoice = shop.fake.close_period(purchase.stripe_subscription_id)
    assert invoice is not None
    shop.fake._outbox.reverse()  # noqa: SLF001 - Stripe does not promise an order
    delivered = [event["type"] for event in shop.fake.flush_events()]
    assert delivered.index("invoice.paid") < delivered.index("invoice.created")

    workers_run()

    assert sale(invoice["id"]).gross_cents == 900


def test_a_publisher_cannot_buy_its_own_listing(shop: Shop) -> None:
    listing = shop.listing("one_time", 1900)
    seller = access_of(shop.world.owner, shop.world.workspace_a)
    with pytest.raises(PurchaseRefused, match="this workspace's own listing"):
        purchase_start(access=seller, listing=listing, **URLS)
    assert not Purchase.objects.filter(listing=listing).exists()


def test_every_webhook_three_times_in_random_order_gives_one_active_purchase(shop: Shop) -> None:
    listing = shop.listing("one_time", 500)
    shop.fake.shuffle, shop.fake.deliver_times = True, 3

    purchase = shop.buy(listing)

    assert purchase.status == Purchase.Status.ACTIVE
    assert Install.objects.filter(listing=listing, workspace=shop.world.workspace_b).count() == 1
    intent = shop.client.v1.payment_intents.retrieve(purchase.stripe_payment_intent_id)
    assert sale(str(intent.latest_charge)).gross_cents == 500


def test_a_copy_without_a_runnable_purchase_is_refused_with_402_and_calls_no_model(
    shop: Shop,
) -> None:
    listing = shop.listing("one_time", 1900)
    purchase = shop.buy(listing)
    agent = shop.copy(listing)
    asked = len(shop.model.requests)

    # the purchase is refunded (money's admin sets it): the copy no longer runs
    Purchase.objects.filter(pk=purchase.pk).update(status=Purchase.Status.REFUNDED)
    with pytest.raises(PurchaseRequired) as refused:
        shop.run(agent)
    assert refused.value.status == 402
    assert "Summariser" in refused.value.message
    assert f"/marketplace/l/{listing.slug}/" in refused.value.message
    assert len(shop.model.requests) == asked
    with schema_context(shop.world.workspace_b.schema_name):
        assert not AgentRun.objects.filter(agent=agent).exclude(status="succeeded").exists()


def test_monthly_runs_until_the_cancelled_period_ends_then_is_refused(shop: Shop) -> None:
    listing = shop.listing("monthly", 900)

    purchase = shop.buy(listing)

    assert purchase.status == Purchase.Status.ACTIVE
    assert purchase.stripe_subscription_id.startswith("sub_")
    assert purchase.current_period_end is not None
    subscription = shop.fake.get(purchase.stripe_subscription_id)
    assert subscription["metadata"]["purchase_id"] == str(purchase.pk)
    assert subscription["items"]["data"][0]["price"]["recurring"]["interval"] == "month"
    first_invoice = subscription["latest_invoice"]
    assert sale(first_invoice).gross_cents == 900
    agent = shop.copy(listing)
    assert shop.run(agent).status == AgentRun.Status.SUCCEEDED
    # the workspace's own plan is untouched by the purchase's subscription
    from billing.models import WorkspacePlan

    plan_row = WorkspacePlan.objects.get(workspace=shop.world.workspace_b)
    assert plan_row.stripe_subscription_id == ""

    # a second month is paid: one more sale
    invoice = shop.fake.close_period(purchase.stripe_subscription_id)
    assert invoice is not None
    assert sale(invoice["id"]).gross_cents == 900

    # a member cannot cancel; the owner cancels at period end: it still runs
    member = Membership.objects.create(
        user=User.objects.create_user(email="m@bravo.test", password="x"),
        workspace=shop.world.workspace_b,
        role=Role.MEMBER,
    )
    with pytest.raises(PermissionDenied):
        purchase_cancel(
            access=access_of(member.user, shop.world.workspace_b), purchase_id=purchase.pk
        )
    canceled = purchase_cancel(access=shop.buyer, purchase_id=purchase.pk)
    assert canceled.status == Purchase.Status.CANCELING
    assert shop.run(agent).status == AgentRun.Status.SUCCEEDED

    # the period ends: Stripe ends the subscription, the copy stops
    shop.fake.close_period(purchase.stripe_subscription_id)
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.ENDED
    with pytest.raises(PurchaseRequired, match="renew it"):
        shop.run(agent)


def test_stripe_down_answers_503_and_leaves_no_purchase(shop: Shop) -> None:
    listing = shop.listing("one_time", 1900)
    shop.fake.fail_next("/v1/checkout/sessions", status=500, times=3)  # and the SDK's retries

    with pytest.raises(ServiceUnavailable, match="Stripe"):
        purchase_start(access=shop.buyer, listing=listing, **URLS)

    assert not Purchase.objects.filter(listing=listing).exists()
    # and it works once Stripe is back
    assert purchase_start(access=shop.buyer, listing=listing, **URLS).checkout_url


def test_a_publisher_not_onboarded_cannot_sell(shop: Shop) -> None:
    listing = shop.listing("one_time", 1900)
    CreatorAccount.objects.filter(publisher=listing.publisher).update(payouts_enabled=False)

    with pytest.raises(PurchaseRefused, match="has not finished setting up payouts"):
        purchase_start(access=shop.buyer, listing=listing, **URLS)
    assert not Purchase.objects.exists()


def test_reviews_of_a_paid_listing_come_only_from_buyers_who_ran_it(shop: Shop) -> None:
    listing = shop.listing("one_time", 1900)
    shop.buy(listing)
    agent = shop.copy(listing)
    shop.model.queue_error(400, message="bad request")
    assert shop.run(agent).status == AgentRun.Status.FAILED
    listing.refresh_from_db()

    with pytest.raises(PermissionDenied, match="bought it and ran it successfully"):
        services.review_save(access=shop.buyer, listing=listing, rating=5)
    # the page offers no review form, says who may review, and refuses a posted one by field
    buyer = Client()
    buyer.force_login(shop.world.outsider)
    url = reverse("marketplace_listing", kwargs={"slug": listing.slug})
    page = buyer.get(url).content.decode()
    assert "mk-review-form" not in page
    assert "Workspaces that bought it and ran it successfully can review it." in page
    posted = buyer.post(
        reverse("marketplace_review", kwargs={"slug": listing.slug}),
        {"workspace": shop.world.workspace_b.slug, "rating": "5"},
    )
    assert posted.status_code == 400
    assert "This workspace cannot review it" in posted.content.decode()
    assert not Review.objects.exists()

    assert shop.run(agent).status == AgentRun.Status.SUCCEEDED
    form = buyer.get(url).content.decode().split("mk-review-form")[1].split("</form>")[0]
    assert f'value="{shop.world.workspace_b.slug}"' in form
    review = services.review_save(access=shop.buyer, listing=listing, rating=4, text="Good.")
    assert review.rating == 4
