"""FakeStripe's fault knobs on the money endpoints of issue 15 (through the real SDK):
`fail_next` answers Stripe's error envelope before anything is stored, on transfer reversals,
dispute re-reads, payouts, invoice payments, balance transactions and application fees;
`hold_after` stores a reversal and holds its answer; `delay_next` makes Stripe slow, so a
client times out and its retry with the same idempotency key makes nothing twice."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.fakes import FakeStripe

ACCOUNT = "acct_1CreatorFake01"


@pytest.fixture(autouse=True)
def _onboarded_account(fake: FakeStripe) -> None:
    """Stripe transfers only to an existing account whose transfers capability is active."""
    fake.connected_account(ACCOUNT)


def _transfer(fake: FakeStripe, amount: int = 2000) -> Any:
    return fake.sdk_client().v1.transfers.create(
        params={"amount": amount, "currency": "usd", "destination": ACCOUNT}
    )


def test_fail_next_on_a_reversal_stores_nothing(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    transfer = _transfer(fake)
    path = f"/v1/transfers/{transfer.id}/reversals"
    fake.fail_next(path, status=500)
    with pytest.raises(stripe.APIError):
        client.v1.transfers.reversals.create(transfer.id, params={"amount": 500})
    assert client.v1.transfers.retrieve(transfer.id).amount_reversed == 0
    assert fake.balance_of(ACCOUNT) == 2000
    fake.fail_next(path, status=400, message="No such transfer.")
    with pytest.raises(stripe.InvalidRequestError, match="No such transfer"):
        client.v1.transfers.reversals.create(transfer.id, params={"amount": 500})
    client.v1.transfers.reversals.create(transfer.id, params={"amount": 500})  # knob spent
    assert fake.balance_of(ACCOUNT) == 1500


def test_hold_after_stores_the_reversal_and_holds_its_answer(fake: FakeStripe) -> None:
    transfer = _transfer(fake)
    fake.hold_after(f"/v1/transfers/{transfer.id}/reversals", 0)
    client = stripe.StripeClient(
        "sk_test_x",
        base_addresses={"api": fake.base_url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=0.5),
    )
    with pytest.raises(stripe.APIConnectionError):  # the caller never hears back
        client.v1.transfers.reversals.create(
            transfer.id, params={"amount": 500}, options={"idempotency_key": "rev-1"}
        )
    assert fake.holding.is_set()
    fake.release()
    again = fake.sdk_client().v1.transfers.reversals.create(
        transfer.id, params={"amount": 500}, options={"idempotency_key": "rev-1"}
    )
    assert fake.sdk_client().v1.transfers.retrieve(transfer.id).amount_reversed == 500
    assert again.amount == 500  # the stored answer, not a second reversal
    assert fake.balance_of(ACCOUNT) == 1500


def test_delay_next_times_a_client_out_and_its_retry_makes_one_reversal(
    fake: FakeStripe,
) -> None:
    transfer = _transfer(fake)
    fake.delay_next(f"/v1/transfers/{transfer.id}/reversals", 30)
    impatient = stripe.StripeClient(
        "sk_test_x",
        base_addresses={"api": fake.base_url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=0.3),
    )
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.transfers.reversals.create(
            transfer.id, params={"amount": 500}, options={"idempotency_key": "rev-1"}
        )
    retry = fake.sdk_client().v1.transfers.reversals.create(
        transfer.id, params={"amount": 500}, options={"idempotency_key": "rev-1"}
    )
    assert retry.amount == 500
    # one reversal: the slow attempt, once carried out, is answered from the same key
    assert fake.balance_of(ACCOUNT) == 1500


def test_fail_next_on_dispute_rereads_payouts_and_invoice_payments(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    charge = fake.add_charge(2500)
    dispute = fake.dispute(charge["id"])
    fake.fail_next(f"/v1/disputes/{dispute['id']}", status=503)
    with pytest.raises(stripe.APIError):
        client.v1.disputes.retrieve(dispute["id"])
    assert client.v1.disputes.retrieve(dispute["id"]).status == "needs_response"

    _transfer(fake)
    payout = fake.pay_out(ACCOUNT)
    on_account: Any = {"stripe_account": ACCOUNT}
    fake.fail_next("/v1/payouts", status=500)
    with pytest.raises(stripe.APIError):
        client.v1.payouts.list(options=on_account)
    assert [p.id for p in client.v1.payouts.list(options=on_account).data] == [payout["id"]]
    fake.fail_next(f"/v1/payouts/{payout['id']}", status=429, message="Too many requests.")
    with pytest.raises(stripe.RateLimitError):
        client.v1.payouts.retrieve(payout["id"], options=on_account)
    assert client.v1.payouts.retrieve(payout["id"], options=on_account).status == "paid"

    fake.fail_next("/v1/invoice_payments", status=500)
    with pytest.raises(stripe.APIError):
        client.v1.invoice_payments.list(params={"invoice": "in_x"})
    assert client.v1.invoice_payments.list(params={"invoice": "in_x"}).data == []


def test_fail_next_on_balance_transactions_and_application_fees(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    charge = fake.add_charge(2000, destination=ACCOUNT, application_fee_amount=300)
    fake.fail_next(f"/v1/balance_transactions/{charge['balance_transaction']}", status=500)
    with pytest.raises(stripe.APIError):
        client.v1.balance_transactions.retrieve(charge["balance_transaction"])
    assert client.v1.balance_transactions.retrieve(charge["balance_transaction"]).fee == 88

    path = f"/v1/application_fees/{charge['application_fee']}/refunds"
    fake.fail_next(path, status=500)
    with pytest.raises(stripe.APIError):
        client.v1.application_fees.refunds.create(charge["application_fee"])
    fee = client.v1.application_fees.retrieve(charge["application_fee"])
    assert fee.amount_refunded == 0  # nothing stored
    client.v1.application_fees.refunds.create(charge["application_fee"])
    assert client.v1.application_fees.retrieve(charge["application_fee"]).refunded
