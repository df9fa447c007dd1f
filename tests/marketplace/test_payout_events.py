"""Money that moves at Stripe outside our code, end to end through both webhook endpoints (the
fake posts signed events to dj-stripe's view on the test server; the workers process them):

- a payout's transfer reversed in the Stripe dashboard shows in the creator's ledger once (paid
  back to available), however often the event is delivered, and a reversal we made ourselves
  for a refund is not counted a second time;
- a creator's bank payout failing (bank account closed; an event of the connected account, sent
  only to the Connect endpoint) shows on their Earnings page with what to do, and to staff in
  the admin; a later paid payout clears it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import User
from billing.stripe_client import stripe_client
from marketplace import earnings
from marketplace.models import BankPayout, LedgerEntry, Payout, Purchase
from marketplace.payouts import payouts_run
from tenants.models import AuditEvent
from tests.fakes import FakeStripe
from tests.helpers.billing import workers_run
from tests.helpers.money import Shop, make_purchase, make_shop
from tests.helpers.personas import World, logged_in

KEY = "sk_test_" + "platform" * 3
PAGE = "/w/alpha/marketplace/earnings/"


@pytest.fixture
def fake(committed_world: World, live_server: Any, settings: Any) -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        settings.STRIPE_TEST_SECRET_KEY = KEY
        settings.STRIPE_API_BASE = fake.base_url
        call_command("billing_webhook_endpoint", url=live_server.url, stdout=StringIO())
        fake.after_delivery = workers_run  # the platform's workers process each delivery
        yield fake
    assert fake.server_errors == []


def _paid(world: World, fake: FakeStripe) -> tuple[Shop, Purchase, Payout]:
    """Alpha's creator (a real connected account at the fake) sold for 25.00 ten days ago and
    was paid 20.00 by transfer."""
    account = stripe_client().v1.accounts.create(
        params={"type": "express", "capabilities": {"transfers": {"requested": True}}}
    )
    fake.complete_onboarding(account.id)
    shop = make_shop(workspace=world.workspace_a, account=account.id)
    purchase = make_purchase(shop, buyer=world.workspace_b, amount=2500)
    charge = fake.add_charge(2500, "usd")
    earnings.sale_record(
        purchase=purchase,
        gross_cents=2500,
        stripe_ref=charge["id"],
        occurred_at=timezone.now() - timedelta(days=10),
    )
    earnings.earnings_release()
    payouts_run()
    (payout,) = Payout.objects.filter(status=Payout.Status.PAID)
    return shop, purchase, payout


def _accepted(fake: FakeStripe, event_type: str) -> int:
    """How many deliveries of `event_type` the platform accepted (all of them must be)."""
    statuses = [d.status for d in fake.deliveries if d.event_type == event_type]
    assert statuses
    assert set(statuses) == {200}, fake.deliveries
    return len(statuses)


def test_a_reversal_made_in_the_dashboard_shows_once_in_the_ledger(
    fake: FakeStripe, committed_world: World
) -> None:
    shop, _, payout = _paid(committed_world, fake)
    fake.deliver_times = 3  # Stripe may deliver an event more than once

    # staff reverse 5.00 of the payout's transfer in the Stripe dashboard
    reversal = stripe_client().v1.transfers.reversals.create(
        payout.stripe_transfer_id, params={"amount": 500}
    )

    assert _accepted(fake, "transfer.reversed") == 3
    rows = LedgerEntry.objects.filter(stripe_id=reversal.id)
    assert sorted((row.bucket, row.amount_cents) for row in rows) == [
        ("available", 500),
        ("paid", -500),
    ]
    assert {row.kind for row in rows} == {LedgerEntry.Kind.TRANSFER_REVERSAL}
    # the platform holds the 5.00 again: available, paid with the next payout
    assert earnings.balances(publisher_id=shop.publisher.pk) == {
        "pending": 0,
        "available": 500,
        "frozen": 0,
        "paid": 1500,
    }
    assert AuditEvent.objects.filter(action="money.transfer_reversed").count() == 1


def test_our_own_reversal_for_a_refund_is_not_recorded_twice(
    fake: FakeStripe, committed_world: World
) -> None:
    shop, purchase, _ = _paid(committed_world, fake)

    refund = earnings.refund_create(
        purchase_id=purchase.pk, sale_ref="", amount_cents=1250, reason="asked", by=None
    )
    refund = earnings.refund_complete(refund_id=refund.pk)

    assert refund.stripe_reversal_id
    _accepted(fake, "transfer.reversed")
    (row,) = LedgerEntry.objects.filter(stripe_id=refund.stripe_reversal_id)
    assert (row.bucket, row.amount_cents) == ("paid", -1000)
    assert earnings.balances(publisher_id=shop.publisher.pk)["paid"] == 1000
    assert earnings.balances(publisher_id=shop.publisher.pk)["available"] == 0
    assert not AuditEvent.objects.filter(action="money.transfer_reversed").exists()


def test_a_failed_bank_payout_is_shown_to_the_creator_and_staff_until_one_is_paid(
    fake: FakeStripe, committed_world: World
) -> None:
    shop, _, _ = _paid(committed_world, fake)
    account = shop.creator.stripe_account_id
    owner = logged_in(committed_world.owner)
    assert "bank-payout-failed" not in owner.get(PAGE).content.decode()

    failed = fake.pay_out(account, failure_code="account_closed")

    _accepted(fake, "payout.failed")
    stored = BankPayout.objects.get(stripe_payout_id=failed["id"])
    assert (stored.status, stored.failure_code, stored.amount_cents) == (
        "failed",
        "account_closed",
        2000,
    )
    html = owner.get(PAGE).content.decode()
    assert 'id="bank-payout-failed"' in html
    assert "Stripe could not pay $20.00 out to your bank" in html
    assert "Your bank account has been closed." in html
    assert "Update your bank account in your Stripe Express dashboard" in html
    assert 'href="https://connect.stripe.com/express_login"' in html
    assert AuditEvent.objects.filter(action="money.bank_payout_failed").count() == 1

    staff = User.objects.create_superuser(email="ops@platform.test", password="x")
    admin = logged_in(staff).get(f"/admin/marketplace/bankpayout/{stored.pk}/change/")
    assert admin.status_code == 200
    assert "Ask the creator to update their bank account" in admin.content.decode()

    # the creator fixed the bank account: Stripe pays the balance out
    paid = fake.pay_out(account)
    _accepted(fake, "payout.paid")
    assert BankPayout.objects.get(stripe_payout_id=paid["id"]).status == "paid"
    assert 'id="bank-payout-failed"' not in owner.get(PAGE).content.decode()


def test_a_connected_account_event_goes_to_the_connect_endpoint_only(
    fake: FakeStripe, committed_world: World
) -> None:
    shop, _, _ = _paid(committed_world, fake)

    fake.pay_out(shop.creator.stripe_account_id)

    # two endpoints at the platform, one delivery: the Connect one's (signed with its secret)
    assert _accepted(fake, "payout.paid") == 1
    endpoints = {
        e.metadata["endpoint"]: e.id for e in stripe_client().v1.webhook_endpoints.list().data
    }
    assert set(endpoints) == {"platform", "connect"}
    assert "payout.paid" in fake.get(endpoints["connect"])["enabled_events"]
    assert "payout.paid" not in fake.get(endpoints["platform"])["enabled_events"]
