"""FakeStripe's fees through the real `stripe` SDK: each succeeded charge's balance transaction
with Stripe's fee (2.9 % + 30 ¢, the fake's rule), destination charges from Checkout and
PaymentIntents (a transfer to the connected account and an application fee), refunds with
`reverse_transfer` / `refund_application_fee` acting in proportion, and application fee
refunds."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.fakes import FakeStripe
from tests.fakes.stripe_fees import proportion
from tests.fakes.stripe_money import stripe_fee

ACCOUNT = "acct_1CreatorFake01"


@pytest.fixture(autouse=True)
def _onboarded_account(fake: FakeStripe) -> None:
    """Stripe transfers only to an existing account whose transfers capability is active."""
    fake.connected_account(ACCOUNT)


def test_each_charge_has_a_balance_transaction_with_stripes_fee(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    charge = fake.add_charge(1900, "usd")
    expanded = client.v1.charges.retrieve(charge["id"], params={"expand": ["balance_transaction"]})
    transaction: Any = expanded.balance_transaction
    assert (transaction.amount, transaction.fee, transaction.net) == (1900, 85, 1815)
    assert transaction.fee_details[0].type == "stripe_fee"
    assert transaction.source == charge["id"]
    again = client.v1.balance_transactions.retrieve(charge["balance_transaction"])
    assert again.fee == 85
    listed = client.v1.balance_transactions.list(params={"source": charge["id"]})
    assert [t.id for t in listed.data] == [transaction.id]
    intent = client.v1.payment_intents.retrieve(
        charge["payment_intent"], params={"expand": ["latest_charge.balance_transaction"]}
    )
    latest: Any = intent.latest_charge
    assert latest.balance_transaction.fee == 85
    assert [stripe_fee(cents) for cents in (50, 100, 999, 10000)] == [31, 33, 59, 320]


def _destination_checkout(fake: FakeStripe) -> dict[str, Any]:
    client = fake.sdk_client()
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "success_url": "https://app.test/done",
            "line_items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 2000,
                        "product_data": {"name": "Agent"},
                    },
                    "quantity": 1,
                }
            ],
            "payment_intent_data": {
                "application_fee_amount": 300,
                "transfer_data": {"destination": ACCOUNT},
            },
        }
    )
    intent = fake.complete_checkout(session.id)
    return fake.get(intent["latest_charge"], "charge")


def test_a_checkout_destination_charge_transfers_and_takes_an_application_fee(
    fake: FakeStripe,
) -> None:
    client = fake.sdk_client()
    charge = _destination_checkout(fake)
    transfer = client.v1.transfers.retrieve(charge["transfer"])
    assert (transfer.amount, transfer.destination, transfer.source_transaction) == (
        1700,
        ACCOUNT,
        charge["id"],
    )
    assert fake.balance_of(ACCOUNT) == 1700
    (fee,) = client.v1.application_fees.list(params={"charge": charge["id"]}).data
    assert (fee.amount, fee.account, fee.originating_transaction) == (300, ACCOUNT, charge["id"])
    assert client.v1.application_fees.retrieve(fee.id).amount_refunded == 0
    assert charge["application_fee"] == fee.id
    assert "application_fee.created" in [event["type"] for event in fake.events]


def test_a_checkout_refuses_a_destination_that_is_not_an_account(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    with pytest.raises(stripe.InvalidRequestError, match="No such destination") as caught:
        client.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "success_url": "https://app.test/done",
                "line_items": [
                    {
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": 2000,
                            "product_data": {"name": "Agent"},
                        },
                        "quantity": 1,
                    }
                ],
                "payment_intent_data": {"transfer_data": {"destination": "cus_nope"}},
            }
        )
    assert caught.value.param == "payment_intent_data[transfer_data][destination]"


def test_partial_refunds_reverse_the_transfer_and_refund_the_fee_in_proportion(
    fake: FakeStripe,
) -> None:
    client = fake.sdk_client()
    intent = client.v1.payment_intents.create(
        params={
            "amount": 2000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "application_fee_amount": 300,
            "transfer_data": {"destination": ACCOUNT},
        }
    )
    assert (intent.status, intent.application_fee_amount) == ("succeeded", 300)
    charge = fake.get(str(intent.latest_charge), "charge")
    flags = {"reverse_transfer": True, "refund_application_fee": True}

    first = client.v1.refunds.create(params={"charge": charge["id"], "amount": 1000, **flags})
    reversal = client.v1.transfers.reversals.retrieve(charge["transfer"], first.transfer_reversal)
    fee = client.v1.application_fees.retrieve(charge["application_fee"])
    assert (reversal.amount, fee.amount_refunded) == (850, 150)  # half of each
    assert fake.balance_of(ACCOUNT) == 850

    client.v1.refunds.create(params={"charge": charge["id"], "amount": 333, **flags})
    transfer = client.v1.transfers.retrieve(charge["transfer"])
    fee = client.v1.application_fees.retrieve(charge["application_fee"])
    # totals so far: round half up of 1700 and 300 x 1333 / 2000
    assert transfer.amount_reversed == proportion(1700, 1333, 2000) == 1133
    assert fee.amount_refunded == proportion(300, 1333, 2000) == 200

    client.v1.refunds.create(params={"charge": charge["id"], **flags})  # the rest
    transfer = client.v1.transfers.retrieve(charge["transfer"])
    fee = client.v1.application_fees.retrieve(charge["application_fee"])
    assert (transfer.amount_reversed, transfer.reversed) == (1700, True)
    assert (fee.amount_refunded, fee.refunded) == (300, True)
    assert fake.balance_of(ACCOUNT) == 0
    assert [r.amount for r in client.v1.application_fees.refunds.list(fee.id).data] == [
        100,
        50,
        150,
    ]


def test_without_the_flags_a_refund_leaves_transfer_and_fee(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    charge = fake.add_charge(2000, destination=ACCOUNT, application_fee_amount=300)
    refund = client.v1.refunds.create(params={"charge": charge["id"], "amount": 1000})
    assert refund.transfer_reversal is None
    assert client.v1.transfers.retrieve(charge["transfer"]).amount_reversed == 0
    assert client.v1.application_fees.retrieve(charge["application_fee"]).amount_refunded == 0
    plain = fake.add_charge(2000)  # no transfer, no fee: the flags change nothing
    client.v1.refunds.create(
        params={"charge": plain["id"], "reverse_transfer": True, "refund_application_fee": True}
    )
    assert client.v1.charges.retrieve(plain["id"]).refunded


def test_a_destination_charges_reversal_may_leave_the_account_negative(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    charge = fake.add_charge(2000, destination=ACCOUNT, application_fee_amount=300)
    fake.pay_out(ACCOUNT)  # the 1700 went to the creator's bank
    client.v1.refunds.create(params={"charge": charge["id"], "reverse_transfer": True})
    assert fake.balance_of(ACCOUNT) == -1700  # Stripe recovers it from the account later

    separate = client.v1.transfers.create(
        params={"amount": 500, "currency": "usd", "destination": ACCOUNT}
    )
    with pytest.raises(stripe.InvalidRequestError, match="Insufficient funds"):
        client.v1.transfers.reversals.create(separate.id, params={"amount": 500})


def test_application_fee_refunds_directly_and_through_a_reversal(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    charge = fake.add_charge(2000, destination=ACCOUNT, application_fee_amount=300)
    fee_id = charge["application_fee"]
    refund = client.v1.application_fees.refunds.create(
        fee_id, params={"amount": 100, "metadata": {"why": "goodwill"}}
    )
    assert (refund.amount, refund.fee, refund.metadata["why"]) == (100, fee_id, "goodwill")
    assert client.v1.application_fees.refunds.retrieve(fee_id, refund.id).amount == 100
    with pytest.raises(stripe.InvalidRequestError, match="greater than the amount left"):
        client.v1.application_fees.refunds.create(fee_id, params={"amount": 201})

    # a transfer reversal with refund_application_fee: the fee in proportion to it (half)
    client.v1.transfers.reversals.create(
        charge["transfer"], params={"amount": 850, "refund_application_fee": True}
    )
    assert client.v1.application_fees.retrieve(fee_id).amount_refunded == 150
    client.v1.application_fees.refunds.create(fee_id)  # the rest
    fee = client.v1.application_fees.retrieve(fee_id)
    assert (fee.amount_refunded, fee.refunded) == (300, True)
    with pytest.raises(stripe.InvalidRequestError, match="already been refunded"):
        client.v1.application_fees.refunds.create(fee_id)
