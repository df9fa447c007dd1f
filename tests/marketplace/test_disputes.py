"""Disputes from Stripe's webhooks, end to end (the fake posts signed events to dj-stripe's
view on the test server; our receiver re-reads the dispute): opened → the sale's unpaid share
is frozen; won → released; lost → reversed (from the payout's transfer, else a clawback).
Every event delivered three times in random order gives the same balances and no duplicate
transfer."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from djstripe.models import WebhookEndpoint

from marketplace import earnings
from marketplace.earnings import SaleNotRecorded
from marketplace.models import LedgerEntry, Purchase
from marketplace.payout_events import DISPUTE_EVENTS
from marketplace.payouts import payouts_run
from tenants.models import AuditEvent
from tests.fakes import FakeStripe
from tests.helpers.billing import workers_run
from tests.helpers.money import Shop, make_purchase, make_shop
from tests.helpers.personas import World

KEY = "sk_test_" + "platform" * 3


def _endpoint(fake: FakeStripe, live_server: Any, settings: Any) -> None:
    settings.STRIPE_TEST_SECRET_KEY = KEY
    settings.STRIPE_API_BASE = fake.base_url
    call_command("billing_webhook_endpoint", url=live_server.url, stdout=StringIO())
    assert set(DISPUTE_EVENTS) <= set(
        fake.get(WebhookEndpoint.objects.get(metadata__endpoint="platform").id)["enabled_events"]
    )
    fake.after_delivery = workers_run  # the platform's workers process each delivery


@pytest.fixture
def fake(committed_world: World, live_server: Any, settings: Any) -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        _endpoint(fake, live_server, settings)
        yield fake
    assert fake.server_errors == []


def _sold(
    world: World, fake: FakeStripe, *, days_ago: int = 1, seller_b: bool = False
) -> tuple[Shop, Purchase, str]:
    """A sale of 25.00 (20.00 to the creator) `days_ago`; the seller is workspace A (B)."""
    seller, buyer = world.workspace_a, world.workspace_b
    if seller_b:
        seller, buyer = buyer, seller
    shop = make_shop(workspace=seller, account=fake.new_id("acct"))
    purchase = make_purchase(shop, buyer=buyer, amount=2500)
    charge = fake.add_charge(2500, "usd")
    earnings.sale_record(
        purchase=purchase,
        gross_cents=2500,
        stripe_ref=charge["id"],
        occurred_at=timezone.now() - timedelta(days=days_ago),
    )
    return shop, purchase, str(charge["id"])


def _accepted(fake: FakeStripe) -> None:
    last = {d.event_id: d.status for d in fake.deliveries if d.event_type in DISPUTE_EVENTS}
    assert last
    assert set(last.values()) == {200}, fake.deliveries


def test_a_dispute_freezes_the_sale_and_a_won_dispute_releases_it(
    fake: FakeStripe, committed_world: World
) -> None:
    shop, _, charge = _sold(committed_world, fake)
    dispute = fake.dispute(charge)
    _accepted(fake)
    assert earnings.balances(publisher_id=shop.publisher.pk) == {
        "pending": 0,
        "available": 0,
        "frozen": 2000,
        "paid": 0,
    }
    fake.close_dispute(dispute["id"], won=True)
    _accepted(fake)
    # back where it was: still in its hold
    assert earnings.balances(publisher_id=shop.publisher.pk) == {
        "pending": 2000,
        "available": 0,
        "frozen": 0,
        "paid": 0,
    }


def test_a_lost_dispute_on_paid_earnings_reverses_the_payout(
    fake: FakeStripe, committed_world: World
) -> None:
    shop, purchase, charge = _sold(committed_world, fake, days_ago=10)
    earnings.earnings_release()
    payouts_run()
    dispute = fake.dispute(charge)
    assert earnings.balances(publisher_id=shop.publisher.pk)["frozen"] == 0  # already paid
    fake.close_dispute(dispute["id"], won=False)
    _accepted(fake)
    assert earnings.balances(publisher_id=shop.publisher.pk) == {
        "pending": 0,
        "available": 0,
        "frozen": 0,
        "paid": 0,
    }
    (reversal,) = [o for o in fake.objects.values() if o["object"] == "transfer_reversal"]
    assert reversal["amount"] == 2000
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.REFUNDED


def test_every_event_three_times_out_of_order_gives_the_same_balances(
    committed_world: World, live_server: Any, settings: Any
) -> None:
    with FakeStripe(deliver_times=3, shuffle=True, hold_events=True, seed=7) as fake:
        _endpoint(fake, live_server, settings)
        paid, _, paid_charge = _sold(committed_world, fake, days_ago=10)
        held, _, held_charge = _sold(committed_world, fake, seller_b=True)
        earnings.earnings_release()
        payouts_run()
        fake.pay_out(paid.creator.stripe_account_id)  # the reversal will be refused
        lost = fake.dispute(paid_charge)
        fake.close_dispute(lost["id"], won=False)
        won = fake.dispute(held_charge)
        fake.close_dispute(won["id"], won=True)
        fake.flush_events()
        _accepted(fake)
        assert len([d for d in fake.deliveries if d.event_type in DISPUTE_EVENTS]) >= 12
        transfers = [o for o in fake.objects.values() if o["object"] == "transfer"]
        assert len(transfers) == 1
        assert not [o for o in fake.objects.values() if o["object"] == "transfer_reversal"]
    # the lost dispute: paid out, reversal refused → owed; the won one: back in its hold
    assert earnings.balances(publisher_id=paid.publisher.pk) == {
        "pending": 0,
        "available": -2000,
        "frozen": 0,
        "paid": 2000,
    }
    assert earnings.balances(publisher_id=held.publisher.pk) == {
        "pending": 2000,
        "available": 0,
        "frozen": 0,
        "paid": 0,
    }
    assert LedgerEntry.objects.filter(kind="clawback").count() == 1
    assert LedgerEntry.objects.filter(kind="dispute_release").count() == 2


# --- Fixes after the audit (services called with Stripe's copy, as the receiver does)

SOLD = datetime.fromisoformat("2026-06-01T12:00:00+00:00")
DUE = SOLD + timedelta(days=8)


def _sale(world: World, fake: FakeStripe, *, record: bool = True) -> tuple[Shop, Purchase, str]:
    shop = make_shop(workspace=world.workspace_a, account=fake.new_id("acct"))
    purchase = make_purchase(shop, buyer=world.workspace_b, amount=2500)
    charge = fake.add_charge(2500, "usd", metadata={"purchase_id": str(purchase.pk)})
    if record:
        earnings.sale_record(
            purchase=purchase, gross_cents=2500, stripe_ref=charge["id"], occurred_at=SOLD
        )
    return shop, purchase, str(charge["id"])


def test_a_dispute_before_its_sale_is_recorded_is_retried_then_freezes_it(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop, purchase, charge = _sale(world, fake_stripe, record=False)
    dispute = fake_stripe.dispute(charge)

    # the webhook's receiver raises: the event is tried again later (billing/webhooks.py)
    with pytest.raises(SaleNotRecorded, match="not recorded yet"):
        earnings.dispute_sync(dispute=fake_stripe.get(dispute["id"]), now=SOLD)
    assert not LedgerEntry.objects.filter(kind="dispute_freeze").exists()

    earnings.sale_record(purchase=purchase, gross_cents=2500, stripe_ref=charge, occurred_at=SOLD)
    assert earnings.dispute_sync(dispute=fake_stripe.get(dispute["id"]), now=SOLD) == (
        "needs_response"
    )
    earnings.earnings_release(now=DUE)
    assert earnings.positions(charge)["frozen"] == 2000
    assert earnings.balances(publisher_id=shop.publisher.pk)["available"] == 0


def test_a_dispute_of_a_payment_that_is_not_a_purchase_is_left_alone(
    world: World, fake_stripe: FakeStripe
) -> None:
    charge = fake_stripe.add_charge(4900, "usd")  # a plan's, or anything else
    dispute = fake_stripe.dispute(charge["id"])
    assert earnings.dispute_sync(dispute=fake_stripe.get(dispute["id"]), now=SOLD) == ""
    assert not LedgerEntry.objects.exists()


def test_a_prevented_dispute_releases_the_sale(world: World, fake_stripe: FakeStripe) -> None:
    shop, _, charge = _sale(world, fake_stripe)
    dispute = fake_stripe.dispute(charge)
    earnings.dispute_sync(dispute=fake_stripe.get(dispute["id"]), now=SOLD)
    assert earnings.positions(charge)["frozen"] == 2000

    prevented = {**fake_stripe.get(dispute["id"]), "status": "prevented"}
    assert earnings.dispute_sync(dispute=prevented, now=DUE) == "prevented"

    assert earnings.balances(publisher_id=shop.publisher.pk) == {
        "pending": 0,
        "available": 2000,
        "frozen": 0,
        "paid": 0,
    }
    won = AuditEvent.objects.get(action="money.dispute_won")
    assert won.metadata["released_cents"] == 2000


def test_a_dispute_with_a_status_unknown_here_stays_frozen_and_is_logged(
    world: World, fake_stripe: FakeStripe, caplog: pytest.LogCaptureFixture
) -> None:
    _, _, charge = _sale(world, fake_stripe)
    dispute = {**fake_stripe.dispute(charge), "status": "something_new"}
    with caplog.at_level(logging.WARNING, logger="marketplace.earnings"):
        earnings.dispute_sync(dispute=dispute, now=DUE)
    assert "unknown here" in caplog.text
    assert earnings.positions(charge)["frozen"] == 2000


def test_every_dispute_step_is_in_the_sellers_audit_log(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop, purchase, won_charge = _sale(world, fake_stripe)
    won = fake_stripe.dispute(won_charge)
    earnings.dispute_sync(dispute=fake_stripe.get(won["id"]), now=SOLD)
    fake_stripe.close_dispute(won["id"], won=True)
    earnings.dispute_sync(dispute=fake_stripe.get(won["id"]), now=SOLD)
    lost_charge = fake_stripe.add_charge(2500, "usd")
    earnings.sale_record(
        purchase=purchase, gross_cents=2500, stripe_ref=lost_charge["id"], occurred_at=SOLD
    )
    lost = fake_stripe.dispute(lost_charge["id"])
    earnings.dispute_sync(dispute=fake_stripe.get(lost["id"]), now=SOLD)
    fake_stripe.close_dispute(lost["id"], won=False)
    earnings.dispute_sync(dispute=fake_stripe.get(lost["id"]), now=SOLD)
    earnings.dispute_sync(dispute=fake_stripe.get(lost["id"]), now=SOLD)  # a replay

    events = AuditEvent.objects.filter(workspace=shop.publisher.workspace)
    opened = events.filter(action="money.dispute_opened")
    assert sorted(e.metadata["dispute"] for e in opened) == sorted([won["id"], lost["id"]])
    assert all(e.metadata["frozen_cents"] == 2000 for e in opened)
    (released,) = events.filter(action="money.dispute_won")
    assert (released.metadata["dispute"], released.metadata["released_cents"]) == (won["id"], 2000)
    (taken,) = events.filter(action="money.dispute_lost")
    assert (taken.metadata["dispute"], taken.metadata["creator_cents"]) == (lost["id"], -2000)
