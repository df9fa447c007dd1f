"""Stripe's webhooks about the money after a marketplace sale. dj-stripe has verified and
deduplicated the event (by id); each receiver re-reads the object from Stripe and hands Stripe's
current copy to a service that records each step once: any number of deliveries, in any order,
end in the same ledger. Imported by MarketplaceConfig.ready().

- disputes (platform events) → `earnings.dispute_sync`; a dispute that is not about a
  marketplace sale (a plan's invoice) is left alone;
- `transfer.reversed` (platform) → `payouts.transfer_reversals_sync`: a reversal of a payout's
  transfer made outside our admin (the Stripe dashboard) shows in the creator's ledger;
- `payout.paid` / `payout.failed` on a creator's connected account (they reach only the
  Connect endpoint, billing/webhooks.py CONNECT_EVENTS) → `connect.bank_payout_sync`.
"""

from __future__ import annotations

import logging
from typing import Any

from djstripe.event_handlers import djstripe_receiver
from djstripe.models import Event

from billing.stripe_client import stripe_client, stripe_errors
from marketplace.connect import bank_payout_sync
from marketplace.earnings import dispute_sync
from marketplace.payouts import transfer_reversals_sync

logger = logging.getLogger(__name__)

# The endpoints must enable these (billing/webhooks.py ENABLED_EVENTS, CONNECT_EVENTS).
DISPUTE_EVENTS = ["charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"]
TRANSFER_EVENTS = ["transfer.reversed"]
BANK_PAYOUT_EVENTS = ["payout.paid", "payout.failed"]


@djstripe_receiver(DISPUTE_EVENTS)  # type: ignore[untyped-decorator]
def on_dispute_event(sender: Any, event: Event, **kwargs: Any) -> None:
    dispute_id = (event.data.get("object") or {}).get("id")
    if not dispute_id:
        return
    with stripe_errors(f"read dispute {dispute_id}"):
        dispute = stripe_client().v1.disputes.retrieve(str(dispute_id))
    status = dispute_sync(dispute=dispute.to_dict())
    logger.info("dispute %s (%s): %s", dispute_id, event.type, status or "not a marketplace sale")


@djstripe_receiver(TRANSFER_EVENTS)  # type: ignore[untyped-decorator]
def on_transfer_reversed(sender: Any, event: Event, **kwargs: Any) -> None:
    transfer_id = (event.data.get("object") or {}).get("id")
    if not transfer_id:
        return
    client = stripe_client()
    with stripe_errors(f"read transfer {transfer_id} and its reversals"):
        transfer = client.v1.transfers.retrieve(str(transfer_id))
        reversals = client.v1.transfers.reversals.list(str(transfer_id), params={"limit": 100})
    recorded = transfer_reversals_sync(
        transfer=transfer.to_dict(), reversals=[r.to_dict() for r in reversals.data]
    )
    logger.info("transfer %s reversed: %s reversal(s) recorded", transfer_id, recorded)


@djstripe_receiver(BANK_PAYOUT_EVENTS)  # type: ignore[untyped-decorator]
def on_bank_payout(sender: Any, event: Event, **kwargs: Any) -> None:
    payout_id = (event.data.get("object") or {}).get("id")
    account_id = _event_account(event)
    if not payout_id or not account_id:
        return
    with stripe_errors(f"read payout {payout_id} of {account_id}"):
        payout = stripe_client().v1.payouts.retrieve(
            str(payout_id), options={"stripe_account": account_id}
        )
    row = bank_payout_sync(account_id=account_id, payout=payout.to_dict())
    logger.info("bank payout %s of %s: %s", payout_id, account_id, row.status if row else "-")


def _event_account(event: Event) -> str:
    """The account an event happened on: dj-stripe's owner account, from the event's `account`
    (a connected account), else the platform's own."""
    owner = event.djstripe_owner_account
    return str(owner.id) if owner is not None else ""
