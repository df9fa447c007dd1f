"""FakeStripe's dispute lifecycle (the statuses and events Stripe sends, through the real SDK):
a chargeback withdraws the amount and the dispute fee (`charge.dispute.funds_withdrawn`) and,
won, reinstates the amount; an inquiry (`warning_needs_response`) moves no money, stays
refundable, and closes as `warning_closed` or escalates to a chargeback; evidence moves a
dispute under review (`charge.dispute.updated`); `prevented` closes one too."""

from __future__ import annotations

import pytest
import stripe

from tests.fakes import FakeStripe
from tests.fakes.stripe_money import DISPUTE_FEE


def _types(fake: FakeStripe, dispute_id: str) -> list[str]:
    return [e["type"] for e in fake.events if e["data"]["object"]["id"] == dispute_id]


def test_a_chargeback_withdraws_the_funds_and_a_win_reinstates_them(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    charge = fake.add_charge(4000)
    dispute = fake.dispute(charge["id"])
    (withdrawal,) = client.v1.disputes.retrieve(dispute["id"]).balance_transactions
    assert (withdrawal.amount, withdrawal.fee, withdrawal.net) == (-4000, DISPUTE_FEE, -5500)

    updated = fake.update_dispute(dispute["id"])
    assert updated["status"] == "under_review"
    fake.close_dispute(dispute["id"], won=True)
    won = client.v1.disputes.retrieve(dispute["id"])
    assert won.status == "won"
    assert [t.amount for t in won.balance_transactions] == [-4000, 4000]
    assert _types(fake, dispute["id"]) == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.updated",
        "charge.dispute.funds_reinstated",
        "charge.dispute.closed",
    ]
    updated_event = next(e for e in fake.events if e["type"] == "charge.dispute.updated")
    assert updated_event["data"]["previous_attributes"] == {"status": "needs_response"}


def test_an_inquiry_moves_no_money_stays_refundable_and_closes_as_a_warning(
    fake: FakeStripe,
) -> None:
    client = fake.sdk_client()
    charge = fake.add_charge(4000)
    inquiry = fake.dispute(charge["id"], inquiry=True)
    assert (inquiry["status"], inquiry["balance_transactions"]) == ("warning_needs_response", [])
    assert fake.update_dispute(inquiry["id"])["status"] == "warning_under_review"
    client.v1.refunds.create(params={"charge": charge["id"], "amount": 1000})  # still allowed
    closed = fake.close_dispute(inquiry["id"], won=True)
    assert closed["status"] == "warning_closed"
    assert _types(fake, inquiry["id"]) == [
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
    ]


def test_an_inquiry_escalates_to_a_chargeback(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    charge = fake.add_charge(4000)
    inquiry = fake.dispute(charge["id"], inquiry=True)
    escalated = fake.update_dispute(inquiry["id"], status="needs_response")
    assert escalated["status"] == "needs_response"
    assert _types(fake, inquiry["id"])[-2:] == [
        "charge.dispute.updated",
        "charge.dispute.funds_withdrawn",
    ]
    with pytest.raises(stripe.InvalidRequestError, match="disputed"):
        client.v1.refunds.create(params={"charge": charge["id"]})
    fake.close_dispute(inquiry["id"], won=False)
    assert client.v1.disputes.retrieve(inquiry["id"]).status == "lost"


def test_a_prevented_dispute_closes_and_closed_ones_stay_closed(fake: FakeStripe) -> None:
    charge = fake.add_charge(4000)
    dispute = fake.dispute(charge["id"])
    assert fake.close_dispute(dispute["id"], status="prevented")["status"] == "prevented"
    assert _types(fake, dispute["id"])[-1] == "charge.dispute.closed"
    with pytest.raises(Exception, match="already closed"):
        fake.close_dispute(dispute["id"], won=True)
    with pytest.raises(Exception, match="already closed"):
        fake.update_dispute(dispute["id"])
