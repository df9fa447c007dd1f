"""The dev emulator (tests/fakes/stripe_serve.py) keeps, across a restart, what a newcomer's
next step depends on: a connected account's balance (so a refund after a payout-less restart
still reverses the transfer instead of clawing back), tiered prices' tiers, and idempotency
keys (a retried request after the restart gets the first answer, not a second object)."""

from __future__ import annotations

from pathlib import Path

import stripe

from tests.fakes.stripe_serve import EmulatedStripe

ACCOUNT = "acct_1CreatorFake01"
KEY = "sk_test_EmulatorLocalDevelopmentOnly"


def _emulator(state: Path) -> EmulatedStripe:
    return EmulatedStripe(port=0, state=state, api_key=KEY)


def _client(emulator: EmulatedStripe) -> stripe.StripeClient:
    return stripe.StripeClient(
        KEY, base_addresses={"api": emulator.base_url}, max_network_retries=0
    )


def test_a_restart_keeps_balances_tiers_and_idempotency_keys(tmp_path: Path) -> None:
    state = tmp_path / "stripe.json"
    with _emulator(state) as before:
        before.connected_account(ACCOUNT)  # Stripe transfers only to an onboarded account
        client = _client(before)
        transfer = client.v1.transfers.create(
            params={"amount": 2000, "currency": "usd", "destination": ACCOUNT},
            options={"idempotency_key": "payout-1"},
        )
        product = client.v1.products.create(params={"name": "Runs"})
        price = client.v1.prices.create(
            params={
                "currency": "usd",
                "product": product.id,
                "recurring": {"interval": "month", "usage_type": "licensed"},
                "billing_scheme": "tiered",
                "tiers_mode": "graduated",
                "tiers": [
                    {"up_to": 10, "unit_amount": 0},
                    {"up_to": "inf", "unit_amount": 3},
                ],
            }
        )
        assert before.balance_of(ACCOUNT) == 2000
    with _emulator(state) as after:
        client = _client(after)
        assert after.balance_of(ACCOUNT) == 2000
        assert after._tiers[price.id] == before._tiers[price.id]  # noqa: SLF001
        again = client.v1.transfers.create(
            params={"amount": 2000, "currency": "usd", "destination": ACCOUNT},
            options={"idempotency_key": "payout-1"},
        )
        assert again.id == transfer.id
        assert after.balance_of(ACCOUNT) == 2000
        reversal = client.v1.transfers.reversals.create(transfer.id, params={"amount": 500})
        assert reversal.amount == 500
        assert after.balance_of(ACCOUNT) == 1500
