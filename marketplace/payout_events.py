"""Stripe's dispute webhooks for marketplace sales. dj-stripe has verified and deduplicated the
event (by id); the receiver re-reads the dispute from Stripe and hands Stripe's current copy to
`earnings.dispute_sync`, which records each step once: any number of deliveries, in any order,
end in the same ledger. A dispute that is not about a marketplace sale (a plan's invoice) is
left alone. Imported by MarketplaceConfig.ready()."""

from __future__ import annotations

import logging
from typing import Any

from djstripe.event_handlers import djstripe_receiver
from djstripe.models import Event

from billing.stripe_client import stripe_client, stripe_errors
from marketplace.earnings import dispute_sync

logger = logging.getLogger(__name__)

# The endpoint must enable these (billing/webhooks.py ENABLED_EVENTS).
DISPUTE_EVENTS = ["charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"]


@djstripe_receiver(DISPUTE_EVENTS)  # type: ignore[untyped-decorator]
def on_dispute_event(sender: Any, event: Event, **kwargs: Any) -> None:
    dispute_id = (event.data.get("object") or {}).get("id")
    if not dispute_id:
        return
    with stripe_errors(f"read dispute {dispute_id}"):
        dispute = stripe_client().v1.disputes.retrieve(str(dispute_id))
    status = dispute_sync(dispute=dispute.to_dict())
    logger.info("dispute %s (%s): %s", dispute_id, event.type, status or "not a marketplace sale")
