"""Applying Stripe's subscription state to the workspace's plan row (issue 14). The webhook
receivers (billing/webhooks.py) and the beat task (billing/tasks.py) call it.

    subscription_sync(subscription_id=.., customer_id=.., event_created=..)
    grace_expire()      # periodic: a failed payment's grace period over -> read-only

Invariant: the row only moves forward (docs/decisions.md 68): what is applied is Stripe's
state read for this event (again under the row's lock when another event was applied since),
never an event's copy; run starts, which lock the same row, never wait on Stripe.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, cast

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.formats import date_format
from stripe.params import SubscriptionUpdateParamsItem

from billing.models import Plan, WorkspacePlan
from billing.plans import default_plan, month_after
from billing.stripe_client import stripe_client, stripe_errors
from core import mail
from tenants.models import Workspace
from tenants.selectors import admin_emails

logger = logging.getLogger(__name__)


LIVE = ("active", "trialing", "past_due", "unpaid")  # Stripe statuses that keep the plan
# Statuses that leave the workspace on the default plan: ended, or `paused` (a trial ended
# without a payment method; resumed, it is active and the plan returns).
ENDED = ("canceled", "incomplete_expired", "paused")
# A subscription as Stripe answers it (`.to_dict()`: the SDK's objects are not dicts).
SubscriptionData = dict[str, Any]
SYNCED_FIELDS = [
    "plan",
    "status",
    "trial_ends_at",
    "current_period_start",
    "current_period_end",
    "cancel_at_period_end",
    "runs_used",
    "grace_ends_at",
    "payment_failed_at",
    "stripe_customer_id",
    "stripe_subscription_id",
    "stripe_checkout_session_id",
    "stripe_subscription_created",
    "stripe_event_created",
    "comped",
    "comp_ends_at",
    "updated_at",
]
_PLAN_LOOKUP_KEY = re.compile(r"plan_(?P<key>[-\w]+)_(?:month|year)")


def _plan_of(subscription: SubscriptionData) -> Plan | None:
    """The plan a subscription's items pay for: the item whose price has a plan lookup key
    (`plan_<key>_month|year`), or whose price or product names it in metadata (a price that
    lost its lookup key to a newer amount)."""
    for item in subscription["items"]["data"]:
        price = item["price"]
        if _metered(price):  # the overage price names its plan too, but is not the plan
            continue
        if price.get("lookup_key") and (found := _PLAN_LOOKUP_KEY.fullmatch(price["lookup_key"])):
            key = found["key"]
        else:
            key = (price.get("metadata") or {}).get("plan_key")
        if key and (plan := Plan.objects.filter(key=key).first()) is not None:
            return plan
    return None


def _metered(price: dict[str, Any]) -> bool:
    return (price.get("recurring") or {}).get("usage_type") == "metered"


def _overage_swap(subscription: SubscriptionData, plan: Plan) -> None:
    """After a plan change made in Stripe's portal (which swaps only the plan's own price),
    make the metered item the new plan's overage price, or remove it when the plan bills no
    overage, so Stripe's free tier is the plan's. Runs after commit, outside the row lock; a
    failure is logged and the next event about the subscription tries again."""
    metered = [item for item in subscription["items"]["data"] if _metered(item["price"])]
    wanted_key = plan.lookup_key("overage") if plan.allows_overage else None
    have = [item["price"].get("lookup_key") for item in metered]
    if have == ([wanted_key] if wanted_key else []):
        return
    client = stripe_client()
    items: list[SubscriptionUpdateParamsItem] = [
        {"id": item["id"], "deleted": True} for item in metered
    ]
    if wanted_key:
        found = client.v1.prices.list(params={"lookup_keys": [wanted_key], "limit": 1}).data
        if not found:
            logger.error("No Stripe price %s: run manage.py billing_sync_plans", wanted_key)
            return
        items.append({"price": found[0].id})
    client.v1.subscriptions.update(
        subscription["id"],
        params={"items": items, "proration_behavior": "none"},
        options={"idempotency_key": f"subscription-{subscription['id']}-overage-{plan.key}"},
    )


def _payment_failing(subscription: SubscriptionData) -> bool:
    """Stripe says the subscription's money is not coming: past_due/unpaid, or its latest
    invoice was attempted and is still open."""
    if subscription["status"] in ("past_due", "unpaid"):
        return True
    invoice = subscription.get("latest_invoice")
    return bool(
        isinstance(invoice, dict) and invoice.get("status") == "open" and invoice.get("attempted")
    )


def _at(timestamp: int | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def _customer_of(subscription: SubscriptionData) -> str:
    customer = subscription["customer"]
    return str(customer if isinstance(customer, str) else customer["id"])


def _locked_row(subscription: SubscriptionData) -> WorkspacePlan | None:
    """The workspace's plan row, locked: found by the Stripe customer we created for it, or
    (a customer we have not recorded) by the workspace id in the subscription's metadata, set
    by `checkout_start`; then the customer is recorded."""
    locked = WorkspacePlan.objects.select_for_update(of=("self",)).select_related("plan")
    customer = _customer_of(subscription)
    if row := locked.filter(stripe_customer_id=customer).first():
        return row
    workspace_id = str((subscription.get("metadata") or {}).get("workspace_id") or "")
    if not workspace_id.isdigit():
        return None
    row = locked.filter(workspace_id=int(workspace_id), stripe_customer_id="").first()
    if row is not None:
        row.stripe_customer_id = customer
    return row


def _read(client: stripe.StripeClient, subscription_id: str) -> SubscriptionData:
    """The subscription with its latest invoice, as Stripe's JSON: the SDK's `raw_request`
    (its errors are raised as for any call) skips building StripeObjects only to turn them
    back into dicts, a third of a webhook batch's time in the SDK."""
    with stripe_errors("read the subscription"):
        answer = client.raw_request(
            "get", f"/v1/subscriptions/{subscription_id}", expand=["latest_invoice"]
        )
    return cast(SubscriptionData, answer.data)


def subscription_sync(
    *, subscription_id: str, customer_id: str | None = None, event_created: datetime | None = None
) -> None:
    """Apply the subscription's state, re-read from Stripe, to its workspace's plan row, moving
    only forward. Idempotent and safe out of order:

    - Stripe is read before the row is locked, so run starts (which lock the same row) never
      wait on Stripe. If another event was applied between that read and the lock, the
      subscription is read again under the lock (rare: two events about one workspace at
      once), so of two concurrent events the one applied second applies the later state;
    - an event older than the last one applied is skipped (the state it would re-read is at
      best what is already applied);
    - an ended subscription that is not the row's changes nothing (a late event about one the
      workspace left), and one created before the row's live one never replaces it;
    - effects happen on edges only: the count of runs restarts when the period moves forward or
      a failed payment is settled; the grace period starts (and owners and admins are mailed)
      when a payment first fails, not again on a repeat.

    Status: active/trialing → the plan the items pay for; payment failing → past_due with
    `BILLING_GRACE_DAYS` of grace (read_only after it, by `grace_expire`); ended → the default
    (free) plan, nothing deleted. `customer_id` (from the event) is the row's, when known."""
    client = stripe_client()
    applied = (
        WorkspacePlan.objects.filter(stripe_customer_id=customer_id)
        .values_list("stripe_event_created", flat=True)
        .first()
        if customer_id
        else None
    )
    subscription = _read(client, subscription_id)
    if (subscription.get("metadata") or {}).get("purchase_id"):
        return  # a marketplace purchase's subscription (marketplace/stripe_events.py), no plan
    with transaction.atomic():
        row = _locked_row(subscription)
        if row is None:
            logger.warning("Stripe subscription %s is not for any workspace", subscription_id)
            return
        if event_created and row.stripe_event_created and event_created < row.stripe_event_created:
            return
        if row.stripe_event_created != applied:  # another event was applied since the read
            subscription = _read(client, subscription_id)
        created = _at(subscription["created"])
        if row.stripe_subscription_id != subscription_id and (
            subscription["status"] not in LIVE
            or (row.stripe_subscription_id and not _newer(created, row))
        ):
            return  # about a subscription the workspace has left, or older than its own
        now = timezone.now()
        if subscription["status"] in ENDED:
            _fall_back_to_default(row, now)
        elif subscription["status"] in LIVE:
            _apply_live(row, subscription, created, now)
        else:  # incomplete: the first payment is still being made
            return
        if event_created and (
            row.stripe_event_created is None or event_created > row.stripe_event_created
        ):
            row.stripe_event_created = event_created
        row.save(update_fields=SYNCED_FIELDS)


def _newer(created: datetime | None, row: WorkspacePlan) -> bool:
    followed = row.stripe_subscription_created
    return followed is None or (created is not None and created >= followed)


def _apply_live(
    row: WorkspacePlan, subscription: SubscriptionData, created: datetime | None, now: datetime
) -> None:
    items = subscription["items"]["data"]
    plan = _plan_of(subscription)
    if plan is None:
        logger.warning("Stripe subscription %s pays for no known plan", subscription["id"])
    else:
        if row.plan_id != plan.pk:
            row.plan = plan
        transaction.on_commit(partial(_overage_swap, subscription, plan), robust=True)
    taken_up = row.stripe_subscription_id != subscription["id"]
    row.comped, row.comp_ends_at = False, None  # a paid subscription replaces a staff comp
    row.stripe_subscription_id = subscription["id"]
    row.stripe_checkout_session_id = ""  # the checkout that made it, if any, has landed
    row.stripe_subscription_created = created
    row.cancel_at_period_end = bool(subscription["cancel_at_period_end"])
    start = _at(min(item["current_period_start"] for item in items)) if items else None
    end = _at(max(item["current_period_end"] for item in items)) if items else None
    if start and end and end - start > timedelta(days=31):
        # Allowances are monthly, also under a yearly price: the plan row's period is the
        # subscription period's first month, and quotas roll it on month by month.
        end = month_after(start)
    if start and end and end > start:
        # A new subscription, or its next period: the count starts again (never backwards).
        if taken_up or start > row.current_period_start:
            row.runs_used = 0
        if taken_up or start >= row.current_period_start:
            row.current_period_start, row.current_period_end = start, end
    if _payment_failing(subscription):
        if row.status not in (WorkspacePlan.Status.PAST_DUE, WorkspacePlan.Status.READ_ONLY):
            row.status = WorkspacePlan.Status.PAST_DUE
            row.payment_failed_at = now
            row.grace_ends_at = now + timedelta(days=settings.BILLING_GRACE_DAYS)
            _mail_payment_failed(row, grace_ends_at=row.grace_ends_at)
        return
    if row.status in (WorkspacePlan.Status.PAST_DUE, WorkspacePlan.Status.READ_ONLY):
        row.runs_used = 0  # paid again: the period's counters start afresh
    row.payment_failed_at = row.grace_ends_at = None
    trialing = subscription["status"] == "trialing"
    row.status = WorkspacePlan.Status.TRIALING if trialing else WorkspacePlan.Status.ACTIVE
    row.trial_ends_at = _at(subscription.get("trial_end")) if trialing else None


def _fall_back_to_default(row: WorkspacePlan, now: datetime) -> None:
    """The subscription ended (cancelled at period end, or unpaid for good): the default plan,
    with its limits, from now; every workspace row and file stays."""
    row.plan = default_plan()
    row.status = WorkspacePlan.Status.ACTIVE
    row.stripe_subscription_id = ""
    row.cancel_at_period_end = False
    row.payment_failed_at = row.grace_ends_at = row.trial_ends_at = None
    row.current_period_start, row.current_period_end = now, month_after(now)
    row.runs_used = 0


def _mail_payment_failed(row: WorkspacePlan, *, grace_ends_at: datetime) -> None:
    workspace = Workspace.objects.only("name").get(pk=row.workspace_id)
    until = date_format(timezone.localtime(grace_ends_at), "j M Y")
    mail.notify_on_commit(
        subject_text=f"Payment failed for {workspace.name}",
        body=(
            f"Stripe could not collect the payment for {workspace.name}'s "
            f"{row.plan.name} plan. Everything keeps working until {until}; after that "
            "runs are paused (pages and exports still work, nothing is deleted) until the "
            "payment goes through. An owner or admin can update the card with Manage "
            "payment on the workspace's Billing page."
        ),
        recipients=admin_emails(workspace_id=row.workspace_id),
    )


def grace_expire(*, now: datetime | None = None) -> int:
    """Make read-only every workspace whose grace period after a failed payment has ended
    (runs refused by `quotas.run_reserve`; pages and exports keep working). Returns how many."""
    now = now or timezone.now()
    expired = 0
    ids = WorkspacePlan.objects.filter(
        status=WorkspacePlan.Status.PAST_DUE, grace_ends_at__lte=now
    ).values_list("pk", flat=True)
    for pk in ids:
        with transaction.atomic():
            row = (
                WorkspacePlan.objects.select_for_update()
                .filter(pk=pk, status=WorkspacePlan.Status.PAST_DUE, grace_ends_at__lte=now)
                .first()
            )
            if row is None:  # paid (or expired) meanwhile
                continue
            row.status = WorkspacePlan.Status.READ_ONLY
            row.save(update_fields=["status", "updated_at"])
            expired += 1
    return expired
