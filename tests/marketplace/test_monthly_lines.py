"""A monthly purchase's invoices as real Stripe shapes them: its subscription's line carries
the subscription's metadata (our `purchase_id` among it) under a `subscription_item_details`
parent. Each paid invoice is one sale keyed by the invoice (never by the line), which staff can
refund and a dispute of its payment reaches; per-run lines stay the invoice items'."""

from __future__ import annotations

from typing import Any

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


def _renewed(shop: Shop) -> tuple[Purchase, str]:
    purchase = shop.buy(shop.listing("monthly", 900))
    invoice = shop.fake.close_period(purchase.stripe_subscription_id)
    assert invoice is not None
    assert invoice["status"] == "paid"
    return purchase, str(invoice["id"])


def test_the_fakes_subscription_lines_carry_the_subscriptions_metadata(shop: Shop) -> None:
    purchase, invoice_id = _renewed(shop)
    (line,) = shop.client.v1.invoices.line_items.list(invoice_id).data
    assert line.metadata.to_dict() == {
        "purchase_id": str(purchase.pk),
        "workspace_id": str(purchase.buyer_id),
    }
    assert line.parent is not None
    assert line.parent.type == "subscription_item_details"
    details = line.parent.subscription_item_details
    assert details is not None
    assert details.subscription == purchase.stripe_subscription_id


def test_a_renewal_is_one_sale_keyed_by_its_invoice(shop: Shop) -> None:
    purchase, invoice_id = _renewed(shop)
    refs = set(
        LedgerEntry.objects.filter(purchase=purchase, kind="sale").values_list(
            "sale_ref", flat=True
        )
    )
    assert invoice_id in refs
    assert len(refs) == 2  # the first invoice's and the renewal's, never a line's (il_…)
    assert all(ref.startswith("in_") for ref in refs)
    assert sale(invoice_id).gross_cents == 900


def test_a_renewal_sale_is_refundable(shop: Shop) -> None:
    purchase, invoice_id = _renewed(shop)
    earnings.refund_check(
        purchase_id=purchase.pk, sale_ref=invoice_id, amount_cents=300, reason="asked"
    )
    refund = earnings.refund_create(
        purchase_id=purchase.pk, sale_ref=invoice_id, amount_cents=300, reason="asked", by=None
    )
    done = earnings.refund_complete(refund_id=refund.pk)
    assert done.stripe_refund_id.startswith("re_")
    intent = _intent_of(shop, invoice_id)
    assert shop.fake.get(intent["latest_charge"], "charge")["amount_refunded"] == 300


def test_a_dispute_of_a_renewals_payment_freezes_its_sale(shop: Shop) -> None:
    purchase, invoice_id = _renewed(shop)
    net = sale(invoice_id).gross_cents - sale(invoice_id).fee_cents
    frozen_before = earnings.balances(publisher_id=purchase.publisher_id)["frozen"]

    shop.fake.dispute(_intent_of(shop, invoice_id)["latest_charge"])

    balances = earnings.balances(publisher_id=purchase.publisher_id)
    assert balances["frozen"] - frozen_before == net
