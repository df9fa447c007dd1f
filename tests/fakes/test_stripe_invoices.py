"""FakeStripe's standalone invoices through the real `stripe` SDK: created with or without the
customer's pending items, finalized once, collected (paid or declined) with Stripe's events, a
paid invoice's payment listed as an `invoice_payment` and refundable; idempotency keys and
`fail_next` apply."""

from __future__ import annotations

import pytest
import stripe

from tests.fakes import FakeStripe


def _customer_with_items(client: stripe.StripeClient, *amounts: int) -> str:
    customer = client.v1.customers.create(params={"name": "Buyer"})
    for n, amount in enumerate(amounts):
        client.v1.invoice_items.create(
            params={
                "customer": customer.id,
                "amount": amount,
                "currency": "usd",
                "metadata": {"run_id": str(n)},
            }
        )
    return str(customer.id)


def _types(fake: FakeStripe, object_id: str) -> list[str]:
    return [e["type"] for e in fake.events if e["data"]["object"].get("id") == object_id]


def test_an_invoice_takes_the_pending_items_only_when_asked(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    customer = _customer_with_items(client, 25, 30)

    empty = client.v1.invoices.create(params={"customer": customer})
    assert (empty.status, empty.total, empty.lines.data) == ("draft", 0, [])

    invoice = client.v1.invoices.create(
        params={
            "customer": customer,
            "pending_invoice_items_behavior": "include",
            "auto_advance": True,
            "metadata": {"workspace_id": "7"},
        }
    )
    assert invoice.total == 55
    assert invoice.subscription is None
    assert invoice.auto_advance is True
    assert invoice.metadata["workspace_id"] == "7"
    assert [line.metadata["run_id"] for line in invoice.lines.data] == ["0", "1"]
    items = client.v1.invoice_items.list(params={"customer": customer}).data
    assert {item.invoice for item in items} == {invoice.id}
    again = client.v1.invoices.create(
        params={"customer": customer, "pending_invoice_items_behavior": "include"}
    )
    assert again.total == 0  # nothing is pending any more
    assert _types(fake, invoice.id) == ["invoice.created"]


def test_finalize_opens_it_once_and_collection_pays_or_fails_with_stripes_events(
    fake: FakeStripe,
) -> None:
    client = fake.sdk_client()
    customer = _customer_with_items(client, 25)
    invoice = client.v1.invoices.create(
        params={"customer": customer, "pending_invoice_items_behavior": "include"}
    )

    opened = client.v1.invoices.finalize_invoice(invoice.id)
    assert opened.status == "open"
    with pytest.raises(stripe.InvalidRequestError, match="already finalized"):
        client.v1.invoices.finalize_invoice(invoice.id)

    fake.collect_invoice(invoice.id, fail=True)
    assert client.v1.invoices.retrieve(invoice.id).status == "open"
    assert client.v1.invoice_payments.list(params={"invoice": invoice.id}).data == []
    fake.collect_invoice(invoice.id)
    paid = client.v1.invoices.retrieve(invoice.id)
    assert (paid.status, paid.amount_paid, paid.attempt_count) == ("paid", 25, 2)
    assert _types(fake, invoice.id) == [
        "invoice.created",
        "invoice.finalized",
        "invoice.payment_failed",
        "invoice.paid",
    ]

    (payment,) = client.v1.invoice_payments.list(
        params={"invoice": invoice.id, "status": "paid"}
    ).data
    assert payment.amount_paid == 25
    intent = client.v1.payment_intents.retrieve(str(payment.payment.payment_intent))
    assert (intent.amount_received, intent.status) == (25, "succeeded")
    refund = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 10})
    assert refund.charge == intent.latest_charge
    assert client.v1.charges.retrieve(str(intent.latest_charge)).amount_refunded == 10


def test_a_zero_invoice_is_paid_when_finalized_and_out_of_band_has_no_payment(
    fake: FakeStripe,
) -> None:
    client = fake.sdk_client()
    customer = _customer_with_items(client)
    zero = client.v1.invoices.create(params={"customer": customer})
    assert client.v1.invoices.finalize_invoice(zero.id).status == "paid"

    customer = _customer_with_items(client, 40)
    invoice = client.v1.invoices.create(
        params={"customer": customer, "pending_invoice_items_behavior": "include"}
    )
    client.v1.invoices.finalize_invoice(invoice.id)
    paid = client.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True})
    assert paid.status == "paid"
    assert client.v1.invoice_payments.list(params={"invoice": invoice.id}).data == []


def test_idempotency_keys_and_fail_next_apply(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    customer = _customer_with_items(client, 25)
    params = {"customer": customer, "pending_invoice_items_behavior": "include"}

    fake.fail_next("/v1/invoices", status=500)
    with pytest.raises(stripe.APIError):
        client.v1.invoices.create(params=params, options={"idempotency_key": "k1"})
    first = client.v1.invoices.create(params=params, options={"idempotency_key": "k1"})
    replay = client.v1.invoices.create(params=params, options={"idempotency_key": "k1"})
    assert replay.id == first.id
    assert first.total == 25
    with pytest.raises(stripe.IdempotencyError):
        client.v1.invoices.create(
            params={**params, "auto_advance": True}, options={"idempotency_key": "k1"}
        )
    assert len([o for o in fake.objects.values() if o["object"] == "invoice"]) == 1
    with pytest.raises(stripe.InvalidRequestError, match="customer"):
        client.v1.invoices.create(params={"auto_advance": True})
