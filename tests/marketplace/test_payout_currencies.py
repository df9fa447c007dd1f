"""Payouts in every currency a creator earned: one payout per creator, period and currency, each
with its own idempotency key and the currency's minimum; the Earnings page shows the balances of
each currency. And a payout retried after Stripe forgot its idempotency key (24 hours) adopts
the transfer an earlier, killed attempt made, found by its transfer group: one transfer."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.test import Client
from django.utils import timezone

from billing.stripe_client import stripe_client
from marketplace import earnings
from marketplace.models import Payout
from marketplace.payouts import payout_book, payouts_run
from tests.fakes import FakeStripe
from tests.helpers.money import Shop, make_purchase, make_shop
from tests.helpers.personas import World

SOLD = datetime.fromisoformat("2026-04-01T09:00:00+00:00")
DUE = SOLD + timedelta(days=8)
PAGE = "/w/alpha/marketplace/earnings/"


def _sell(world: World, fake: FakeStripe, shop: Shop, gross: int, currency: str) -> None:
    """A sale of `gross` in `currency` (20 % fee), on the listing's purchase in that currency
    (USD: workspace B's, EUR: workspace A's; a later sale is a renewal of it)."""
    buyer = world.workspace_b if currency == "usd" else world.workspace_a
    purchase = shop.listing.purchases.filter(buyer=buyer).first()
    if purchase is None:
        purchase = make_purchase(shop, buyer=buyer, amount=gross)
        purchase.currency = currency
        purchase.save(update_fields=["currency"])
    charge = fake.add_charge(gross, currency)
    earnings.sale_record(
        purchase=purchase, gross_cents=gross, stripe_ref=charge["id"], occurred_at=SOLD
    )


def _transfers(fake: FakeStripe) -> list[dict[str, Any]]:
    return [o for o in fake.objects.values() if o["object"] == "transfer"]


def test_a_creator_is_paid_once_per_currency_with_a_key_each(
    world: World, fake_stripe: FakeStripe, settings: Any
) -> None:
    settings.MARKETPLACE_MIN_PAYOUT_CENTS = 1000
    shop = make_shop(workspace=world.workspace_a)
    _sell(world, fake_stripe, shop, 2500, "usd")  # 20.00 USD to the creator
    _sell(world, fake_stripe, shop, 5000, "eur")  # 40.00 EUR
    earnings.earnings_release(now=DUE)

    report = payouts_run(now=DUE)

    assert (report.booked, report.sent, report.failed) == (2, 2, 0)
    payouts = {p.currency: p for p in Payout.objects.all()}
    assert {c: p.amount_cents for c, p in payouts.items()} == {"usd": 2000, "eur": 4000}
    assert {p.period for p in payouts.values()} == {DUE.date().isoformat()}
    transfers = {t["currency"]: t for t in _transfers(fake_stripe)}
    assert {c: t["amount"] for c, t in transfers.items()} == {"usd": 2000, "eur": 4000}
    assert {c: t["id"] for c, t in transfers.items()} == {
        c: p.stripe_transfer_id for c, p in payouts.items()
    }
    keys = {r.headers["idempotency-key"] for r in fake_stripe.requests if r.path == "/v1/transfers"}
    assert keys == {
        f"payout-{shop.creator.pk}-{DUE.date().isoformat()}-usd",
        f"payout-{shop.creator.pk}-{DUE.date().isoformat()}-eur",
    }
    # the same period again: nothing more in either currency
    assert payouts_run(now=DUE + timedelta(hours=3)).booked == 0
    assert len(_transfers(fake_stripe)) == 2


def test_each_currency_has_its_own_minimum(
    world: World, fake_stripe: FakeStripe, settings: Any
) -> None:
    settings.MARKETPLACE_MIN_PAYOUT_CENTS = 1000
    settings.MARKETPLACE_MIN_PAYOUT_CENTS_BY_CURRENCY = {"eur": 5000}
    shop = make_shop(workspace=world.workspace_a)
    _sell(world, fake_stripe, shop, 2500, "usd")  # 20.00 USD: over the default 10.00
    _sell(world, fake_stripe, shop, 5000, "eur")  # 40.00 EUR: under EUR's 50.00
    earnings.earnings_release(now=DUE)

    payouts_run(now=DUE)

    assert [(p.currency, p.amount_cents) for p in Payout.objects.all()] == [("usd", 2000)]
    # another EUR sale makes 80.00 EUR available: paid the next day
    _sell(world, fake_stripe, shop, 5000, "eur")
    earnings.earnings_release(now=DUE + timedelta(days=8))
    payouts_run(now=DUE + timedelta(days=8))
    assert sorted((p.currency, p.amount_cents) for p in Payout.objects.all()) == [
        ("eur", 8000),
        ("usd", 2000),
    ]


def test_the_earnings_page_shows_the_balances_of_each_currency(
    world: World, fake_stripe: FakeStripe, owner_client: Client
) -> None:
    shop = make_shop(workspace=world.workspace_a)
    _sell(world, fake_stripe, shop, 2500, "usd")
    _sell(world, fake_stripe, shop, 5000, "eur")
    earnings.earnings_release(now=DUE)
    _sell(world, fake_stripe, shop, 1000, "eur")  # 8.00 EUR, still in its hold

    html = owner_client.get(PAGE).content.decode()

    assert 'id="balance-available">$20.00</span>' in html  # the account's currency first
    assert 'id="balance-available-eur">40.00 EUR</span>' in html
    assert 'id="balance-pending-eur">8.00 EUR</span>' in html
    assert 'aria-label="Balances in EUR"' in html


def test_by_day_and_by_listing_never_add_two_currencies_together(
    world: World, fake_stripe: FakeStripe, owner_client: Client
) -> None:
    # given: today, 25.00 USD and 50.00 EUR of sales of the same listing (20 % fee)
    shop = make_shop(workspace=world.workspace_a)
    today = timezone.now()
    for buyer, gross, currency in (
        (world.workspace_b, 2500, "usd"),
        (world.workspace_a, 5000, "eur"),
    ):
        purchase = make_purchase(shop, buyer=buyer, amount=gross)
        purchase.currency = currency
        purchase.save(update_fields=["currency"])
        charge = fake_stripe.add_charge(gross, currency)
        earnings.sale_record(
            purchase=purchase, gross_cents=gross, stripe_ref=charge["id"], occurred_at=today
        )

    # then: the page has a chart and a listing row per currency, each in its own money
    html = owner_client.get(PAGE).content.decode()
    assert 'id="chart-title-usd">By day · USD</h2>' in html
    assert 'id="chart-title-eur">By day · EUR</h2>' in html
    assert "$20.00; best day" in html
    assert "40.00 EUR; best day" in html
    assert "60.00" not in html  # 20 USD + 40 EUR added together
    assert "<strong>$20.00</strong>" in html
    assert "<strong>40.00 EUR</strong>" in html

    # and the API gives balances and listing rows per currency
    body = owner_client.get("/api/v1/marketplace/earnings/", HTTP_X_WORKSPACE="alpha").json()
    assert [(row["currency"], row["pending"]) for row in body["balances"]] == [
        ("usd", 2000),
        ("eur", 4000),
    ]
    assert sorted((row["currency"], row["net_cents"]) for row in body["listings"]) == [
        ("eur", 4000),
        ("usd", 2000),
    ]


def test_a_retry_after_the_key_expired_adopts_the_transfer_of_its_group(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop = make_shop(workspace=world.workspace_a)
    _sell(world, fake_stripe, shop, 2500, "usd")
    earnings.earnings_release(now=DUE)
    now = timezone.now()
    payout, booked = payout_book(
        creator=shop.creator, period=now.date().isoformat(), currency="usd", now=now
    )
    assert booked
    assert payout is not None
    # an attempt made the transfer at Stripe and the process was killed before saving it
    made = stripe_client().v1.transfers.create(
        params={
            "amount": payout.amount_cents,
            "currency": "usd",
            "destination": shop.creator.stripe_account_id,
            "transfer_group": payout.transfer_group,
        },
        options={"idempotency_key": payout.idempotency_key},
    )
    fake_stripe.forget_idempotency_keys()  # a day later: the same key would make a second one

    report = payouts_run(now=now + timedelta(hours=25))

    assert report.sent == 1
    payout.refresh_from_db()
    assert payout.status == Payout.Status.PAID
    assert payout.stripe_transfer_id == made.id
    assert [t["id"] for t in _transfers(fake_stripe)] == [made.id]
    (lookup,) = [r for r in fake_stripe.requests if r.method == "GET" and r.path == "/v1/transfers"]
    assert lookup.body["transfer_group"] == payout.transfer_group
    assert fake_stripe.balance_of(shop.creator.stripe_account_id) == 2000


def test_a_retry_after_the_key_expired_creates_the_transfer_when_none_was_made(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop = make_shop(workspace=world.workspace_a)
    _sell(world, fake_stripe, shop, 2500, "usd")
    earnings.earnings_release(now=DUE)
    now = timezone.now()
    payout, _ = payout_book(
        creator=shop.creator, period=now.date().isoformat(), currency="usd", now=now
    )
    assert payout is not None
    fake_stripe.fail_next("/v1/transfers", status=400, message="Your balance is too low.")
    payouts_run(now=now)  # refused: nothing made
    payout.refresh_from_db()
    assert payout.status == Payout.Status.PENDING

    payouts_run(now=now + timedelta(hours=25))

    payout.refresh_from_db()
    assert payout.status == Payout.Status.PAID
    (transfer,) = _transfers(fake_stripe)
    assert transfer["id"] == payout.stripe_transfer_id
    assert transfer["transfer_group"] == payout.transfer_group
