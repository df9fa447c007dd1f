"""FakeStripe's money endpoints through the real `stripe` SDK: charges and refunds (partial,
never more than is left, refused on a disputed charge), transfers to a connected account and
their reversals (refused when the account's balance went to its bank), disputes as signed
events, payouts; idempotency keys and `fail_next` apply to them."""

from __future__ import annotations

import pytest
import stripe

from tests.fakes import FakeStripe
from tests.fakes.webhook_receiver import WebhookReceiver

SECRET = "whsec_test_secret"
ACCOUNT = "acct_1CreatorFake01"


def test_a_charge_is_refunded_in_parts_never_beyond_what_is_left(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    charge = fake.add_charge(2500, "usd", metadata={"purchase_id": "7"})
    assert client.v1.charges.retrieve(charge["id"]).metadata["purchase_id"] == "7"
    intent = client.v1.payment_intents.retrieve(charge["payment_intent"])
    assert (intent.status, intent.latest_charge) == ("succeeded", charge["id"])

    first = client.v1.refunds.create(
        params={"charge": charge["id"], "amount": 1000, "reverse_transfer": False},
        options={"idempotency_key": "refund-1"},
    )
    again = client.v1.refunds.create(
        params={"charge": charge["id"], "amount": 1000, "reverse_transfer": False},
        options={"idempotency_key": "refund-1"},
    )
    assert again.id == first.id
    second = client.v1.refunds.create(
        params={"payment_intent": intent.id, "amount": 1500, "refund_application_fee": True}
    )
    assert (first.amount, second.amount, second.charge) == (1000, 1500, charge["id"])
    refreshed = client.v1.charges.retrieve(charge["id"])
    assert (refreshed.amount_refunded, refreshed.refunded) == (2500, True)
    with pytest.raises(stripe.InvalidRequestError, match="greater than unrefunded"):
        client.v1.refunds.create(params={"charge": charge["id"], "amount": 1})


def test_a_reversal_is_refused_once_the_account_paid_its_balance_out(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    fake.connected_account(ACCOUNT)  # onboarded: Stripe transfers only to an active account
    transfer = client.v1.transfers.create(
        params={
            "amount": 2000,
            "currency": "usd",
            "destination": ACCOUNT,
            "transfer_group": "payout-1",
        },
        options={"idempotency_key": "payout-1-2026-01-01"},
    )
    assert fake.balance_of(ACCOUNT) == 2000
    assert [t.id for t in client.v1.transfers.list(params={"destination": ACCOUNT}).data] == [
        transfer.id
    ]
    reversal = client.v1.transfers.reversals.create(transfer.id, params={"amount": 500})
    assert (reversal.amount, reversal.transfer) == (500, transfer.id)
    assert client.v1.transfers.retrieve(transfer.id).amount_reversed == 500
    assert fake.balance_of(ACCOUNT) == 1500

    payout = fake.pay_out(ACCOUNT)
    assert payout["amount"] == 1500
    assert [p.id for p in client.v1.payouts.list().data] == [payout["id"]]
    with pytest.raises(stripe.InvalidRequestError, match="Insufficient funds") as caught:
        client.v1.transfers.reversals.create(transfer.id, params={"amount": 500})
    assert caught.value.code == "balance_insufficient"
    listed = client.v1.transfers.reversals.list(transfer.id)
    assert [r.id for r in listed.data] == [reversal.id]


def test_fail_next_applies_to_transfers(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    fake.fail_next("/v1/transfers", status=503)
    with pytest.raises(stripe.APIError):
        client.v1.transfers.create(
            params={"amount": 100, "currency": "usd", "destination": ACCOUNT}
        )
    assert fake.balance_of(ACCOUNT) == 0


def test_disputes_open_and_close_with_signed_events(fake: FakeStripe) -> None:
    with WebhookReceiver() as receiver:
        fake.webhook_url = receiver.url
        fake.webhook_secret = SECRET
        client = fake.sdk_client()
        charge = fake.add_charge(4000, "usd")
        dispute = fake.dispute(charge["id"])
        assert client.v1.disputes.retrieve(dispute["id"]).status == "needs_response"
        with pytest.raises(stripe.InvalidRequestError, match="disputed"):
            client.v1.refunds.create(params={"charge": charge["id"]})
        fake.close_dispute(dispute["id"], won=False)
        assert client.v1.disputes.retrieve(dispute["id"]).status == "lost"
        events = [
            stripe.Webhook.construct_event(
                hit["body"].decode(), hit["headers"]["stripe-signature"], SECRET
            )
            for hit in receiver.received
        ]
    types = [event.type for event in events]
    assert types[-3:] == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",  # a chargeback takes the money at once
        "charge.dispute.closed",
    ]
    assert events[-1].data.object.id == dispute["id"]
