"""Stripe's fee on a sale, read from the charge's balance transaction, is in the ledger and in
the creator's CSV statement: for a one-time sale (its own charge) and a monthly sale (the
invoice's payment). When Stripe has no fee to say (an invoice paid outside Stripe), the sale
is recorded without one."""

from __future__ import annotations

import csv
import io
from typing import Any

from django.test import Client

from marketplace.purchases import run_charges_flush, run_charges_invoice
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
    # each 0.25 line: 31 x 25 / 50 rounded down (the odd cent is nobody's sale)
    assert [sale(line).stripe_fee_cents for line in lines] == [15, 15]
    assert [_statement(shop)[line]["stripe_fee"] for line in lines] == ["0.15", "0.15"]


def test_an_invoice_paid_outside_stripe_records_no_fee(shop: Shop) -> None:
    purchase = shop.buy(shop.listing("monthly", 900))
    invoice = shop.fake.close_period(purchase.stripe_subscription_id, fail=True)
    assert invoice is not None
    shop.client.v1.invoices.pay(invoice["id"], params={"paid_out_of_band": True})

    assert sale(invoice["id"]).stripe_fee_cents is None
    assert _statement(shop)[invoice["id"]]["stripe_fee"] == ""
