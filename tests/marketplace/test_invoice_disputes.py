"""Disputes of a payment that paid an invoice (a monthly purchase's, or per-run lines on it):
the dispute reaches the sales on that invoice through the invoice payment, freezes their
unpaid share while open, and a lost one takes it back as a refund would; the ledger's rows
stay the balances throughout."""

from __future__ import annotations

from typing import Any

from django.db.models import Sum

from marketplace import earnings
from marketplace.models import LedgerEntry, Purchase
from tests.helpers.purchases import Shop, sale


def _intent_of(shop: Shop, invoice_id: str) -> dict[str, Any]:
    (payment,) = [
        o
        for o in shop.fake.objects.values()
        if o["object"] == "invoice_payment" and o["invoice"] == invoice_id
    ]
    return shop.fake.get(payment["payment"]["payment_intent"], "payment_intent")


def _rows_are_balances(publisher_id: int) -> dict[str, int]:
    balances = earnings.balances(publisher_id=publisher_id)
    rows = LedgerEntry.objects.filter(publisher_id=publisher_id)
    for bucket, cents in balances.items():
        assert (rows.filter(bucket=bucket).aggregate(s=Sum("amount_cents"))["s"] or 0) == cents
    return balances


def _monthly(shop: Shop) -> tuple[Purchase, str, dict[str, Any]]:
    purchase = shop.buy(shop.listing("monthly", 900))
    invoice_id = str(shop.fake.get(purchase.stripe_subscription_id)["latest_invoice"])
    return purchase, invoice_id, _intent_of(shop, invoice_id)


def test_a_disputed_monthly_invoice_freezes_its_sale_and_a_loss_takes_it_back(
    shop: Shop,
) -> None:
    purchase, invoice_id, intent = _monthly(shop)
    net = sale(invoice_id).gross_cents - sale(invoice_id).fee_cents
    assert _rows_are_balances(purchase.publisher_id)["pending"] == net

    dispute = shop.fake.dispute(intent["latest_charge"])  # delivered and processed
    balances = _rows_are_balances(purchase.publisher_id)
    assert (balances["pending"], balances["frozen"]) == (0, net)

    shop.fake.close_dispute(dispute["id"], won=False)
    balances = _rows_are_balances(purchase.publisher_id)
    assert sum(balances.values()) == 0  # the creator's share went back with the buyer's money
    shop.fake.flush_events()  # a redelivery changes nothing
    assert _rows_are_balances(purchase.publisher_id) == balances


def test_a_won_dispute_of_an_invoice_releases_the_sale(shop: Shop) -> None:
    purchase, invoice_id, intent = _monthly(shop)
    net = sale(invoice_id).gross_cents - sale(invoice_id).fee_cents
    dispute = shop.fake.dispute(intent["latest_charge"], amount=450)  # half of it
    frozen = _rows_are_balances(purchase.publisher_id)["frozen"]
    assert 0 < frozen < net

    shop.fake.close_dispute(dispute["id"], won=True)
    balances = _rows_are_balances(purchase.publisher_id)
    assert (balances["pending"], balances["frozen"]) == (net, 0)
