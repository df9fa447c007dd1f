"""Stripe's fee on a sale, read from the charge's balance transaction, is in the ledger and in
the creator's CSV statement: for a one-time sale (its own charge) and a monthly sale (the
invoice's payment). When Stripe has no fee to say (an invoice paid outside Stripe), the sale
is recorded without one."""

from __future__ import annotations

import csv
import io
from typing import Any

from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from marketplace.purchases import run_charges_flush, run_charges_invoice, stripe_fee_shares
from tests.fakes.stripe_money import stripe_fee
from tests.helpers.purchases import Shop, sale

CSV = "/w/alpha/marketplace/earnings/statement.csv"


def _statement(shop: Shop) -> dict[str, dict[str, str]]:
    seller = Client()
    seller.force_login(shop.world.owner)
    response = seller.get(CSV)
    assert response.status_code == 200
    rows = csv.DictReader(io.StringIO(response.content.decode()))
    return {row["sale"]: row for row in rows if row["kind"] == "Sale"}


def _fee_of(shop: Shop, charge_id: str) -> int:
    charge = shop.client.v1.charges.retrieve(charge_id, params={"expand": ["balance_transaction"]})
    transaction: Any = charge.balance_transaction
    return int(transaction.fee)


def test_a_one_time_sale_records_stripes_fee(shop: Shop) -> None:
    purchase = shop.buy(shop.listing("one_time", 1900))
    intent = shop.fake.get(purchase.stripe_payment_intent_id, "payment_intent")
    charge_id = intent["latest_charge"]

    assert _fee_of(shop, charge_id) == stripe_fee(1900) == 85  # 2.9 % + 30 ¢
    assert sale(charge_id).stripe_fee_cents == 85
    assert _statement(shop)[charge_id]["stripe_fee"] == "0.85"


def test_a_monthly_sale_records_stripes_fee_on_its_invoices_payment(shop: Shop) -> None:
    purchase = shop.buy(shop.listing("monthly", 900))
    invoice_id = str(shop.fake.get(purchase.stripe_subscription_id)["latest_invoice"])

    assert sale(invoice_id).stripe_fee_cents == stripe_fee(900) == 56
    row = _statement(shop)[invoice_id]
    assert (row["gross"], row["stripe_fee"]) == ("9.00", "0.56")


def test_per_run_sales_share_the_fee_of_their_invoices_payment(shop: Shop, settings: Any) -> None:
    settings.RUN_CHARGE_INVOICE_MIN_CENTS = 1
    listing = shop.listing("per_run", 25)
    shop.buy(listing)
    agent = shop.copy(listing)
    for n in range(2):
        shop.run(agent, f"Text {n}.")
    run_charges_flush(shop.client)
    assert run_charges_invoice(shop.client) == 1
    (invoice,) = [o for o in shop.fake.objects.values() if o["object"] == "invoice"]
    shop.fake.collect_invoice(invoice["id"])

    lines = [line["id"] for line in invoice["lines"]["data"]]
    assert stripe_fee(50) == 31  # the invoice's one payment of 0.50
    # each 0.25 line half of 0.31, by the running total: 16 then 15, the whole fee to the cent
    assert [sale(line).stripe_fee_cents for line in lines] == [16, 15]
    assert [_statement(shop)[line]["stripe_fee"] for line in lines] == ["0.16", "0.15"]


@given(
    fee=st.integers(min_value=0, max_value=100_000),
    grosses=st.lists(st.integers(min_value=1, max_value=1_000_000), min_size=1, max_size=12),
    others=st.integers(min_value=-500_000, max_value=500_000),
)
def teststripe_fee_shares_add_up_to_the_sales_part_of_the_fee_exactly(
    fee: int, grosses: list[int], others: int
) -> None:
    """Whatever else the payment paid (a plan's line: more; a credit balance: less), the sales'
    shares are whole cents, never negative, and add up to their rounded part of the fee, never
    more than the fee."""
    paid = max(1, sum(grosses) + others)
    shares = stripe_fee_shares(fee, paid, grosses)
    assert all(isinstance(share, int) and share >= 0 for share in shares)
    total = sum(share or 0 for share in shares)
    assert total == min(fee, (2 * fee * sum(grosses) + paid) // (2 * paid))
    assert total <= fee


def test_an_invoice_paid_outside_stripe_records_no_fee(shop: Shop) -> None:
    purchase = shop.buy(shop.listing("monthly", 900))
    invoice = shop.fake.close_period(purchase.stripe_subscription_id, fail=True)
    assert invoice is not None
    shop.client.v1.invoices.pay(invoice["id"], params={"paid_out_of_band": True})

    assert sale(invoice["id"]).stripe_fee_cents is None
    assert _statement(shop)[invoice["id"]]["stripe_fee"] == ""
