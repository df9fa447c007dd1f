"""FakeStripe's Connect webhooks and payout knobs through the real `stripe` SDK: an endpoint
created with `connect=true` gets the connected accounts' events (those with `account` set) and
no platform event, the others the reverse; a connected account's bank payout that fails; the
transfers of a transfer group; idempotency keys forgotten as after Stripe's 24 hours."""

from __future__ import annotations

import json
from typing import Any

import pytest
import stripe

from tests.fakes import FakeStripe
from tests.fakes.webhook_receiver import WebhookReceiver

ACCOUNT = "acct_1CreatorFake02"


def _events(receiver: WebhookReceiver) -> list[tuple[str, str | None]]:
    bodies = [json.loads(r["body"]) for r in receiver.received]
    return [(body["type"], body.get("account")) for body in bodies]


def test_connected_account_events_reach_only_connect_endpoints(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    with WebhookReceiver() as platform, WebhookReceiver() as connect:
        client.v1.webhook_endpoints.create(params={"url": platform.url, "enabled_events": ["*"]})
        created = client.v1.webhook_endpoints.create(
            params={"url": connect.url, "enabled_events": ["*"], "connect": True}
        )
        assert created.secret.startswith("whsec_")
        account = client.v1.accounts.create(params={"type": "express"})

        fake.add_charge(1000, "usd")  # the platform's
        fake.complete_onboarding(account.id)  # the connected account's
        fake.pay_out(account.id)

        assert _events(platform) == [
            ("payment_intent.succeeded", None),
            ("charge.succeeded", None),
        ]
        assert _events(connect) == [
            ("account.updated", account.id),
            ("payout.paid", account.id),
        ]


def test_a_bank_payout_fails_and_the_money_stays_in_the_account(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    fake.connected_account(ACCOUNT)  # onboarded: transfers capability active
    client.v1.transfers.create(params={"amount": 3000, "currency": "usd", "destination": ACCOUNT})

    failed = fake.pay_out(ACCOUNT, failure_code="account_closed")

    assert (failed["status"], failed["failure_code"]) == ("failed", "account_closed")
    assert failed["failure_message"] == "The bank account has been closed."
    assert fake.balance_of(ACCOUNT) == 3000
    assert [e["type"] for e in fake.events if e.get("account") == ACCOUNT] == ["payout.failed"]
    # a connected account's payout is read with its Stripe-Account header, as Stripe wants
    seen = client.v1.payouts.retrieve(failed["id"], options={"stripe_account": ACCOUNT})
    assert seen.status == "failed"
    with pytest.raises(stripe.InvalidRequestError, match="No such payout"):
        client.v1.payouts.retrieve(failed["id"])
    listed = client.v1.payouts.list(options={"stripe_account": ACCOUNT}).data
    assert [p.id for p in listed] == [failed["id"]]
    assert client.v1.payouts.list(options={"stripe_account": "acct_other"}).data == []

    paid = fake.pay_out(ACCOUNT)
    assert (paid["status"], paid["amount"]) == ("paid", 3000)
    assert fake.balance_of(ACCOUNT) == 0


def test_transfers_are_listed_by_group_and_a_forgotten_key_makes_a_new_one(
    fake: FakeStripe,
) -> None:
    client = fake.sdk_client()
    fake.connected_account(ACCOUNT)  # onboarded: transfers capability active
    params: Any = {
        "amount": 500,
        "currency": "usd",
        "destination": ACCOUNT,
        "transfer_group": "g-1",
    }
    first = client.v1.transfers.create(params=params, options={"idempotency_key": "k-1"})
    again = client.v1.transfers.create(params=params, options={"idempotency_key": "k-1"})
    assert again.id == first.id
    other: Any = {**params, "transfer_group": "g-2"}
    client.v1.transfers.create(params=other)

    listed = client.v1.transfers.list(params={"transfer_group": "g-1"}).data
    assert [t.id for t in listed] == [first.id]

    fake.forget_idempotency_keys()  # a day later
    later = client.v1.transfers.create(params=params, options={"idempotency_key": "k-1"})
    assert later.id != first.id
    assert len(client.v1.transfers.list(params={"transfer_group": "g-1"}).data) == 2
