"""FakeStripe's payments through the real `stripe` SDK: Checkout in payment mode (inline
`price_data`) completes into a PaymentIntent and a Charge, setup mode saves a card as the
customer's default for invoices, subscriptions take inline prices, invoice items wait for the
customer's next invoice, and the fault knobs apply."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.fakes import FakeStripe
from tests.fakes.stripe_api import StripeError

URLS = {"success_url": "https://app.test/ok", "cancel_url": "https://app.test/back"}


def _price_data(amount: int, **extra: Any) -> dict[str, Any]:
    return {
        "currency": "usd",
        "unit_amount": amount,
        "product_data": {"name": "Summariser"},
        **extra,
    }


def _types(fake: FakeStripe) -> list[str]:
    return [event["type"] for event in fake.events]


def test_a_payment_checkout_with_an_inline_price_completes_into_a_paid_intent_and_charge(
    fake: FakeStripe,
) -> None:
    client = fake.sdk_client()
    customer = client.v1.customers.create(params={"name": "Buyer"})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "customer": customer.id,
            "line_items": [{"price_data": _price_data(1900), "quantity": 1}],
            "payment_intent_data": {
                "transfer_group": "purchase-7",
                "metadata": {"purchase_id": "7"},
            },
            "metadata": {"purchase_id": "7"},
            **URLS,
        }
    )
    assert session.url
    assert session.status == "open"

    fake.complete_checkout(session.id)

    done = client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status) == ("complete", "paid")
    intent = client.v1.payment_intents.retrieve(str(done.payment_intent))
    assert (intent.status, intent.amount_received, intent.currency) == ("succeeded", 1900, "usd")
    assert intent.transfer_group == "purchase-7"
    assert intent.metadata["purchase_id"] == "7"
    charge = client.v1.charges.retrieve(str(intent.latest_charge))
    assert (charge.amount, charge.paid, charge.payment_intent) == (1900, True, intent.id)
    assert charge.transfer_group == "purchase-7"
    assert _types(fake)[-3:] == [
        "charge.succeeded",
        "payment_intent.succeeded",
        "checkout.session.completed",
    ]
    with pytest.raises(StripeError, match="not open"):  # a session completes once
        fake.complete_checkout(session.id)


def test_a_setup_checkout_saves_a_card_as_the_customers_default_for_invoices(
    fake: FakeStripe,
) -> None:
    client = fake.sdk_client()
    customer = client.v1.customers.create(params={"name": "Buyer"})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "setup",
            "currency": "usd",
            "customer": customer.id,
            "setup_intent_data": {"metadata": {"purchase_id": "9"}},
            **URLS,
        }
    )
    page = fake.base_url + f"/test/checkout/{session.id}"
    assert page == session.url

    fake.complete_checkout(session.id)

    done = client.v1.checkout.sessions.retrieve(session.id)
    assert done.status == "complete"
    intent = client.v1.setup_intents.retrieve(str(done.setup_intent))
    assert (intent.status, intent.metadata["purchase_id"]) == ("succeeded", "9")
    method = client.v1.payment_methods.retrieve(str(intent.payment_method))
    assert method.customer == customer.id
    after = client.v1.customers.retrieve(customer.id)
    assert after.invoice_settings.default_payment_method == method.id
    assert "setup_intent.succeeded" in _types(fake)
    assert _types(fake)[-1] == "checkout.session.completed"


def test_a_subscription_takes_an_inline_monthly_price_and_invoice_items_join_its_next_invoice(
    fake: FakeStripe,
) -> None:
    client = fake.sdk_client()
    customer = client.v1.customers.create(params={"name": "Buyer"})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [
                {"price_data": _price_data(900, recurring={"interval": "month"}), "quantity": 1}
            ],
            "subscription_data": {"metadata": {"purchase_id": "3"}},
            **URLS,
        }
    )
    subscription = fake.complete_checkout(session.id)
    assert subscription["metadata"]["purchase_id"] == "3"
    assert subscription["items"]["data"][0]["price"]["unit_amount"] == 900

    for run in (1, 2):
        item = client.v1.invoice_items.create(
            params={
                "customer": customer.id,
                "amount": 25,
                "currency": "usd",
                "metadata": {"purchase_id": "4", "run_id": str(run)},
            },
            options={"idempotency_key": f"per-run-4-{run}"},
        )
        assert item.invoice is None
    replay = client.v1.invoice_items.create(  # same key, same item
        params={
            "customer": customer.id,
            "amount": 25,
            "currency": "usd",
            "metadata": {"purchase_id": "4", "run_id": "2"},
        },
        options={"idempotency_key": "per-run-4-2"},
    )
    assert replay.id == item.id

    invoice = fake.close_period(subscription["id"])
    assert invoice is not None
    amounts = sorted(line["amount"] for line in invoice["lines"]["data"])
    assert amounts == [25, 25, 900]
    assert invoice["total"] == 950
    runs = sorted(
        line["metadata"]["run_id"]
        for line in invoice["lines"]["data"]
        if line["parent"]["type"] == "invoice_item_details"
    )
    assert runs == ["1", "2"]
    (subscription_line,) = [
        line
        for line in invoice["lines"]["data"]
        if line["parent"]["type"] == "subscription_item_details"
    ]  # Stripe copies the subscription's metadata onto its line
    assert subscription_line["metadata"] == fake.get(subscription["id"])["metadata"]
    paged = client.v1.invoices.line_items.list(invoice["id"], params={"limit": 2})
    assert len(paged.data) == 2
    assert paged.has_more
    every = list(paged.auto_paging_iter())
    assert [line.id for line in every] == [line["id"] for line in invoice["lines"]["data"]]
    # charged once: the next invoice has the subscription only
    again = fake.close_period(subscription["id"])
    assert again is not None
    assert again["total"] == 900


def test_invoice_items_obey_the_fault_knobs_and_refuse_unknown_customers(
    fake: FakeStripe,
) -> None:
    client = fake.sdk_client()
    customer = client.v1.customers.create(params={"name": "Buyer"})
    fake.fail_next("/v1/invoiceitems", status=503)
    params: Any = {"customer": customer.id, "amount": 25, "currency": "usd"}
    with pytest.raises(stripe.APIError):
        client.v1.invoice_items.create(params=params)
    assert client.v1.invoice_items.create(params=params).amount == 25
    with pytest.raises(stripe.InvalidRequestError, match="No such customer"):
        client.v1.invoice_items.create(params={**params, "customer": "cus_missing"})
