"""Buying paid listings (issue 15): Stripe Checkout for the current version's price, activation
from Stripe's webhooks, the run gate, and per-run charges as invoice items.

    purchase_start(access=.., listing=.., success_url=.., cancel_url=..)  # -> PurchaseStarted
    checkout_completed(session_id=..)        # webhooks (marketplace/stripe_events.py) ...
    payment_intent_succeeded(payment_intent_id=..)
    subscription_changed(subscription_id=..)
    invoice_paid(invoice_id=..)
    purchase_cancel(access=.., purchase_id=..)  # a monthly purchase, at period end
    run_gate(event)                          # core.hooks.run_starting: 402 without a purchase
    run_charge_record(event)                 # core.hooks.run_finished: a per-run charge row
    run_charges_flush(client)                # send due charge rows as Stripe invoice items
    run_charges_invoice(client)              # a standalone invoice for workspaces without a
                                             # subscription, when their charges are due

Invariants:
- a purchase becomes active only from Stripe's state read back by a webhook handler, never
  from the success redirect (anyone can open it); handlers re-read the object from Stripe and
  move a purchase forward only (pending → active ⇄ canceling → ended), so they are idempotent
  and safe in any order;
- every sale is recorded through `marketplace.earnings.sale_record`, keyed by the Stripe object
  that carried the money (the charge, the subscription's invoice, the per-run invoice line), so
  a replayed event records nothing;
- an installed copy of a paid listing runs only with a runnable purchase (`run_gate`), and is
  installed only with one (`services.install`); while billing is off nothing is charged;
- a per-run charge is on one invoice: `RunCharge.stripe_invoice_id` is set from the lines of
  the invoice Stripe put its item on, and a standalone invoice is made only for charges with
  none, one workspace at a time (decision 87).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection, transaction
from django.db.models import Case, Exists, Max, Min, OuterRef, Q, QuerySet, Sum, Value, When
from django.utils import timezone
from django.utils.formats import date_format

from agents.gateway import budgets
from agents.gateway.budgets import BudgetExceeded
from agents.models import AgentRun
from billing.meter import permanent_refusal, retry_at
from billing.models import WorkspacePlan
from billing.stripe_client import billing_mode, stripe_client, stripe_errors
from billing.subscriptions import customer_ensure
from core.exceptions import ApplicationError, Conflict, NotFound, ServiceUnavailable
from core.formatting import cost_text
from core.hooks import RunFinished, RunStarting
from core.queue import enqueue
from core.recovery import advisory_key
from marketplace import fees, services
from marketplace.earnings import PURCHASE_CANCELED, PURCHASE_PAID, purchase_audit
from marketplace.models import PURCHASE_RUNNABLE, Listing, ListingVersion, Purchase, RunCharge
from marketplace.pricing import PurchaseRequired, checkout_active, listing_path, price_terms
from tenants.models import Membership, Workspace
from tenants.permissions import Access, Perm
from tenants.schemas import each_live_workspace, live_workspaces
from tenants.selectors import access_for_membership
from workflows.models import RunStatus, WorkflowRun

logger = logging.getLogger(__name__)

FLUSH_TASK = "marketplace.flush_run_charges"
FLUSH_QUEUED_KEY = "marketplace:run-charges-flush-queued"
FLUSH_DELAY_SECONDS = 5
LIVE = (Purchase.Status.PENDING, Purchase.Status.ACTIVE, Purchase.Status.CANCELING)
RUNNABLE = PURCHASE_RUNNABLE
SUBSCRIPTION_ENDED = ("canceled", "incomplete_expired", "unpaid")
OUTCOME_FIELDS = [
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "stripe_invoice_item_id",
    "sent_at",
    "updated_at",
]


class PurchaseRefused(ApplicationError):
    """A purchase that cannot be made as asked (the message says why and what to do)."""

    code = "purchase_refused"
    status = 409


@dataclass(frozen=True)
class PurchaseStarted:
    purchase: Purchase
    checkout_url: str | None  # None: nothing to pay now (per run, a card already on file)


# --- starting a purchase ---------------------------------------------------------------------


def _sellable(listing: Listing) -> tuple[Listing, ListingVersion]:
    listing = Listing.objects.select_related("publisher", "current_version").get(pk=listing.pk)
    version = listing.current_version
    if not listing.is_public or version is None:
        raise NotFound("This listing is not available.")
    if version.pricing == Listing.Pricing.FREE:
        raise PurchaseRefused(f"“{listing.title}” is free: install it, there is nothing to buy.")
    account = getattr(listing.publisher, "creator_account", None)
    if account is None or not account.onboarded:
        raise PurchaseRefused(
            f"{listing.publisher.display_name} has not finished setting up payouts with Stripe, "
            f"so “{listing.title}” cannot be bought yet. Try again later; nothing was charged."
        )
    return listing, version


def _pending_purchase(
    access: Access, listing: Listing, version: ListingVersion
) -> tuple[Purchase, bool]:
    """The workspace's pending purchase of `listing` at the version's price (reused), or a new
    one (a pending one at an older price is ended first). (purchase, created)."""
    with transaction.atomic():
        live = (
            Purchase.objects.select_for_update()
            .filter(buyer=access.workspace, listing=listing, status__in=LIVE)
            .first()
        )
        if live is not None and live.runnable:
            raise Conflict(
                f"This workspace already bought “{listing.title}” ({live.get_status_display()})."
            )
        if live is not None:
            same = (live.version_id, live.pricing, live.unit_amount_cents, live.currency) == (
                version.pk,
                version.pricing,
                version.price_cents,
                version.currency,
            )
            if same:
                return live, False
            _close_checkout(live)  # the older price's page must not be payable any more
            live.status, live.ended_at = Purchase.Status.ENDED, timezone.now()
            live.save(update_fields=["status", "ended_at", "updated_at"])
        purchase = Purchase.objects.create(
            buyer=access.workspace,
            listing=listing,
            version=version,
            publisher=listing.publisher,
            pricing=version.pricing,
            unit_amount_cents=version.price_cents,
            currency=version.currency,
            fee_percent=fees.fee_percent(listing),
            bought_by_id=access.actor_id,
        )
        return purchase, True


def _close_checkout(purchase: Purchase) -> None:
    """Expire a pending purchase's open Checkout Session at Stripe before the purchase is
    ended; refuse (409) when it was paid already (its webhook is on its way)."""
    if not purchase.stripe_checkout_session_id:
        return
    client = stripe_client()
    with stripe_errors("close the earlier checkout"):
        try:
            client.v1.checkout.sessions.expire(purchase.stripe_checkout_session_id)
            return
        except stripe.InvalidRequestError:  # not open any more: expired, or completed
            session = client.v1.checkout.sessions.retrieve(purchase.stripe_checkout_session_id)
    if session.status == "complete":
        raise Conflict(
            f"A checkout for “{purchase.listing.title}” was just paid: the purchase becomes "
            "active in a moment. Nothing more to pay."
        )


def _has_default_payment_method(client: stripe.StripeClient, customer_id: str) -> bool:
    with stripe_errors("read the workspace's payment details"):
        customer = client.v1.customers.retrieve(customer_id).to_dict()
    return bool((customer.get("invoice_settings") or {}).get("default_payment_method"))


def _checkout_url(
    client: stripe.StripeClient,
    purchase: Purchase,
    *,
    customer_id: str,
    success_url: str,
    cancel_url: str,
) -> str:
    metadata = {"purchase_id": str(purchase.pk), "workspace_id": str(purchase.buyer_id)}
    price_data: dict[str, Any] = {
        "currency": purchase.currency,
        "unit_amount": purchase.unit_amount_cents,
        "product_data": {"name": purchase.listing.title, "metadata": metadata},
    }
    params: dict[str, Any] = {
        "customer": customer_id,
        "client_reference_id": str(purchase.buyer_id),
        "success_url": success_url,
        "cancel_url": cancel_url,
        "metadata": metadata,
    }
    if purchase.pricing == Purchase.Pricing.ONE_TIME:
        params |= {
            "mode": "payment",
            "line_items": [{"price_data": price_data, "quantity": 1}],
            "payment_intent_data": {
                "transfer_group": f"purchase-{purchase.pk}",
                "metadata": metadata,
            },
        }
    elif purchase.pricing == Purchase.Pricing.MONTHLY:
        price_data["recurring"] = {"interval": "month"}
        params |= {
            "mode": "subscription",
            "line_items": [{"price_data": price_data, "quantity": 1}],
            "subscription_data": {"metadata": metadata},
        }
    else:  # per run: a payment method on file; each successful run is invoiced later
        params |= {
            "mode": "setup",
            "currency": purchase.currency,
            "setup_intent_data": {"metadata": metadata},
        }
    with stripe_errors("start the checkout"):
        session = client.v1.checkout.sessions.create(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"purchase-{purchase.pk}-checkout"},
        )
    if not session.url:
        raise ServiceUnavailable("Stripe returned a checkout session without a page to pay on.")
    Purchase.objects.filter(pk=purchase.pk).update(stripe_checkout_session_id=session.id)
    return str(session.url)


def purchase_start(
    *, access: Access, listing: Listing, success_url: str, cancel_url: str
) -> PurchaseStarted:
    """Start buying `listing` for the access's workspace at its current version's price:
    a Stripe Checkout URL (one-time: payment; monthly: subscription; per run: saving a card),
    or none when a per-run listing's workspace already has a card on file (then the purchase
    is active and the copy installed now). Owners and admins only. Refuses while billing is
    off, for a free listing, a publisher not onboarded with Stripe, a listing already bought.
    Stripe down: ServiceUnavailable (503), and a purchase created for this attempt is removed."""
    access.require(Perm.BILLING_MANAGE)
    if not checkout_active():
        raise PurchaseRefused(
            f"{billing_mode()} Paid listings cannot be bought until then (installing them is "
            "free meanwhile)."
        )
    listing, version = _sellable(listing)
    if listing.publisher.workspace_id == access.workspace.pk:
        raise PurchaseRefused(
            f"“{listing.title}” is this workspace's own listing: use the agent or workflow it "
            "was published from (buying it would pay yourself, less the platform's fee)."
        )
    purchase, created = _pending_purchase(access, listing, version)
    try:
        client = stripe_client()
        customer_id = customer_ensure(client=client, workspace_id=access.workspace.pk)
        if purchase.pricing == Purchase.Pricing.PER_RUN and _has_default_payment_method(
            client, customer_id
        ):
            url = None
        else:
            url = _checkout_url(
                client,
                purchase,
                customer_id=customer_id,
                success_url=success_url,
                cancel_url=cancel_url,
            )
    except ServiceUnavailable:
        if created:  # nothing at Stripe refers to it: leave no half-made purchase
            Purchase.objects.filter(pk=purchase.pk, status=Purchase.Status.PENDING).delete()
        raise
    if url is None:
        _activate(purchase.pk)
    purchase.refresh_from_db()
    return PurchaseStarted(purchase=purchase, checkout_url=url)


# --- activation, from webhooks -----------------------------------------------------------------


def _purchase_id(metadata: Any) -> int | None:
    value = str((metadata or {}).get("purchase_id") or "")
    return int(value) if value.isdigit() else None


def _at(timestamp: int | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def _install_for_buyer(purchase_id: int) -> None:
    """Install the bought listing in the buyer's workspace, as the member who bought it.
    Already installed (or the buyer left the workspace): nothing to do; they install it from
    the listing page, which the purchase now allows."""
    purchase = Purchase.objects.select_related("buyer", "listing", "bought_by").get(pk=purchase_id)
    membership = (
        Membership.objects.select_related("workspace")
        .filter(workspace=purchase.buyer, user=purchase.bought_by)
        .first()
    )
    if membership is None or purchase.bought_by is None:
        return
    access = access_for_membership(membership=membership, user=purchase.bought_by)
    try:
        services.install(access=access, listing=purchase.listing)
    except ApplicationError as exc:
        logger.info("purchase %s: not installed (%s)", purchase_id, exc.message)


def _activate(purchase_id: int, **fields: Any) -> bool:
    """pending → active (with `fields`), then the install after commit. True if it moved."""
    with transaction.atomic():
        purchase = Purchase.objects.select_for_update().get(pk=purchase_id)
        for name, value in fields.items():
            if value and not getattr(purchase, name):
                setattr(purchase, name, value)
        if purchase.status != Purchase.Status.PENDING:
            purchase.save(update_fields=[*fields, "updated_at"])
            return False
        purchase.status, purchase.activated_at = Purchase.Status.ACTIVE, timezone.now()
        purchase.save(update_fields=["status", "activated_at", *fields, "updated_at"])
        purchase_audit(purchase=purchase, action=PURCHASE_PAID, by=purchase.bought_by)
        transaction.on_commit(lambda: _install_for_buyer(purchase_id), robust=True)
    return True


def _sale(
    purchase_id: int,
    *,
    gross_cents: int,
    stripe_ref: str,
    at: datetime | None,
    stripe_fee_cents: int | None = None,
) -> None:
    from marketplace.earnings import sale_record  # money's module (issue 15)

    if gross_cents <= 0:
        return
    purchase = Purchase.objects.get(pk=purchase_id)
    sale_record(
        purchase=purchase,
        gross_cents=gross_cents,
        stripe_ref=stripe_ref,
        occurred_at=at or timezone.now(),
        stripe_fee_cents=stripe_fee_cents,
    )


def _charge_fee(charge: Any) -> int | None:
    """Stripe's fee on a charge retrieved with its `balance_transaction` expanded: None while
    Stripe has not settled it yet (no balance transaction) or when it was not expanded."""
    if not isinstance(charge, dict):
        return None
    transaction = charge.get("balance_transaction")
    if not isinstance(transaction, dict) or transaction.get("fee") is None:
        return None
    return int(transaction["fee"])


def _invoice_fee(client: stripe.StripeClient, invoice_id: str) -> tuple[int | None, int]:
    """Stripe's fee on what paid the invoice, and the amount it paid: its paid invoice
    payments' payment intents, each re-read with the latest charge's balance transaction.
    (None, 0) when it was paid without a card payment (credit balance, out of band) or a fee
    is not known yet. Call inside `stripe_errors`."""
    fee, paid = 0, 0
    payments = client.v1.invoice_payments.list(
        params={"invoice": invoice_id, "status": "paid", "limit": 10}
    )
    for payment in payments.data:
        intent_id = getattr(payment.payment, "payment_intent", None)
        if not intent_id:
            return None, 0
        intent = client.v1.payment_intents.retrieve(
            intent_id if isinstance(intent_id, str) else intent_id.id,
            params={"expand": ["latest_charge.balance_transaction"]},
        ).to_dict()
        charge_fee = _charge_fee(intent.get("latest_charge"))
        if charge_fee is None:
            return None, 0
        fee, paid = fee + charge_fee, paid + int(payment.amount_paid or 0)
    return (fee, paid) if paid > 0 else (None, 0)


def stripe_fee_shares(fee: int | None, paid: int, grosses: list[int]) -> list[int | None]:
    """Each sale's part of Stripe's fee on the payment it shares with the invoice's other
    lines: in proportion to its gross, by the running total (each share is the rounded
    cumulative part less the parts before it, half up), so the shares add up exactly and never
    to more than the fee (a credit balance may have paid part of the invoice: the payment is
    then less than the sales; what the payment does not cover has no fee)."""
    if fee is None or paid <= 0:
        return [None] * len(grosses)
    shares: list[int | None] = []
    running = before = 0
    for gross in grosses:
        running += gross
        upto = min(fee, (2 * fee * running + paid) // (2 * paid))
        shares.append(upto - before)
        before = upto
    return shares


def payment_intent_succeeded(*, payment_intent_id: str) -> None:
    """A one-time purchase's payment, as Stripe has it: succeeded → active, one sale."""
    client = stripe_client()
    with stripe_errors("read the payment"):
        intent = client.v1.payment_intents.retrieve(
            payment_intent_id, params={"expand": ["latest_charge.balance_transaction"]}
        ).to_dict()
    purchase_id = _purchase_id(intent.get("metadata"))
    if purchase_id is None or intent.get("status") != "succeeded":
        return
    _activate(purchase_id, stripe_payment_intent_id=intent["id"])
    charge = intent.get("latest_charge")
    charge_id = charge["id"] if isinstance(charge, dict) else charge
    _sale(
        purchase_id,
        gross_cents=int(intent.get("amount_received") or 0),
        stripe_ref=str(charge_id or intent["id"]),
        at=_at(intent.get("created")),
        stripe_fee_cents=_charge_fee(charge),
    )


def checkout_completed(*, session_id: str) -> None:
    """A purchase's Checkout finished: what it set up, re-read from Stripe."""
    client = stripe_client()
    with stripe_errors("read the checkout"):
        session = client.v1.checkout.sessions.retrieve(session_id).to_dict()
    purchase_id = _purchase_id(session.get("metadata"))
    if purchase_id is None or session.get("status") != "complete":
        return
    if session["mode"] == "payment" and session.get("payment_intent"):
        payment_intent_succeeded(payment_intent_id=str(session["payment_intent"]))
    elif session["mode"] == "subscription" and session.get("subscription"):
        subscription_changed(subscription_id=str(session["subscription"]))
    elif session["mode"] == "setup" and session.get("setup_intent"):
        setup_intent_succeeded(setup_intent_id=str(session["setup_intent"]))


def setup_intent_succeeded(*, setup_intent_id: str) -> None:
    """A per-run purchase's card was saved: it becomes the customer's default for invoices (so
    per-run charges are collected) and the purchase is active."""
    client = stripe_client()
    with stripe_errors("read the saved card"):
        intent = client.v1.setup_intents.retrieve(setup_intent_id).to_dict()
    purchase_id = _purchase_id(intent.get("metadata"))
    if purchase_id is None or intent.get("status") != "succeeded":
        return
    method, customer = intent.get("payment_method"), intent.get("customer")
    if method and customer and not _has_default_payment_method(client, str(customer)):
        with stripe_errors("save the card for invoices"):
            client.v1.customers.update(
                str(customer),
                params={"invoice_settings": {"default_payment_method": str(method)}},
                options={"idempotency_key": f"purchase-{purchase_id}-default-card"},
            )
    _activate(purchase_id)


def _apply_subscription(subscription: dict[str, Any]) -> None:
    """A monthly purchase follows its subscription, forward only: live → active (or canceling
    when it cancels at period end), ended → ended for good."""
    purchase_id = _purchase_id(subscription.get("metadata"))
    if purchase_id is None:
        return
    items = (subscription.get("items") or {}).get("data") or []
    period_end = _at(max((item["current_period_end"] for item in items), default=None))
    status = subscription["status"]
    if status in ("active", "trialing", "past_due"):
        _activate(purchase_id, stripe_subscription_id=subscription["id"])
    with transaction.atomic():
        purchase = Purchase.objects.select_for_update().get(pk=purchase_id)
        if purchase.status in (Purchase.Status.ENDED, Purchase.Status.REFUNDED):
            return
        purchase.stripe_subscription_id = purchase.stripe_subscription_id or subscription["id"]
        purchase.current_period_end = period_end or purchase.current_period_end
        if status in SUBSCRIPTION_ENDED:
            purchase.status, purchase.ended_at = Purchase.Status.ENDED, timezone.now()
        elif purchase.runnable:
            at_end = bool(subscription.get("cancel_at_period_end"))
            purchase.status = Purchase.Status.CANCELING if at_end else Purchase.Status.ACTIVE
        purchase.save(
            update_fields=[
                "status",
                "ended_at",
                "stripe_subscription_id",
                "current_period_end",
                "updated_at",
            ]
        )


def subscription_changed(*, subscription_id: str) -> None:
    client = stripe_client()
    with stripe_errors("read the subscription"):
        subscription = client.v1.subscriptions.retrieve(subscription_id).to_dict()
    _apply_subscription(subscription)


def _line_subscription(line: dict[str, Any]) -> str | None:
    found = line.get("subscription")
    if not found:
        details = (line.get("parent") or {}).get("subscription_item_details") or {}
        found = details.get("subscription")
    return str(found) if found else None


def _per_run_purchase(line: dict[str, Any]) -> int | None:
    """The per-run purchase an invoice line is a charge of: only an invoice item's line
    (`parent.type == "invoice_item_details"`, as our per-run charges are) carrying its
    `purchase_id`. A subscription's line carries the subscription's metadata (Stripe copies
    it onto `type=subscription` lines, so a monthly purchase's line has `purchase_id` too):
    it is never a per-run line."""
    parent = line.get("parent") or {}
    if parent:
        is_item = parent.get("type") == "invoice_item_details"
    else:  # API versions before 2025-03 (no `parent`): the line's own type
        is_item = line.get("type") == "invoiceitem"
    return _purchase_id(line.get("metadata")) if is_item else None


def _invoice_subscription(invoice: dict[str, Any]) -> str | None:
    found = invoice.get("subscription")
    if not found:
        details = (invoice.get("parent") or {}).get("subscription_details") or {}
        found = details.get("subscription")
    if isinstance(found, dict):
        found = found.get("id")
    return str(found) if found else None


def billed_purchases_exist(*, customer_id: Any) -> bool:
    """Whether the workspace of Stripe customer `customer_id` ever had a purchase its
    invoices bill (monthly or per run): a plan invoice of any other is not read again."""
    if not isinstance(customer_id, str) or not customer_id:
        return False
    return Purchase.objects.filter(
        buyer__billing__stripe_customer_id=customer_id,
        pricing__in=[Purchase.Pricing.MONTHLY, Purchase.Pricing.PER_RUN],
    ).exists()


def invoice_payment_failed(*, invoice_id: str) -> None:
    """A payment of an invoice failed: re-read, and while it is still unpaid the per-run charges
    on it are marked unpaid from now (once: a repeat keeps the first time). Past
    BILLING_GRACE_DAYS the buyer's per-run listings stop running (`run_gate`) until it is paid
    (`invoice_paid` clears the mark)."""
    client = stripe_client()
    with stripe_errors("read the invoice"):
        invoice = client.v1.invoices.retrieve(invoice_id).to_dict()
        if invoice.get("status") != "open":
            return
        _charges_invoiced(invoice_id, _invoice_lines(client, invoice_id))
    RunCharge.objects.filter(stripe_invoice_id=invoice_id, unpaid_since=None).update(
        unpaid_since=timezone.now(), updated_at=timezone.now()
    )


def _unpaid_since(workspace_id: int | None) -> datetime | None:
    """Since when the workspace has left an invoice of per-run charges unpaid past its grace."""
    return (
        RunCharge.objects.filter(
            purchase__buyer_id=workspace_id,
            unpaid_since__lte=timezone.now() - timedelta(days=settings.BILLING_GRACE_DAYS),
        )
        .order_by("unpaid_since")
        .values_list("unpaid_since", flat=True)
        .first()
    )


def invoice_paid(*, invoice_id: str) -> None:
    """A paid invoice, re-read with all its lines: a monthly purchase's lines are one sale
    (keyed by the invoice); each per-run line (an invoice item's line carrying `purchase_id`,
    `_per_run_purchase`) is one sale (keyed by the line). Per-run items ride on whichever
    invoice of the workspace comes next, so any paid invoice may carry them; their charges are
    noted as taken by it. Each sale gets its share of Stripe's fee on the invoice's payment
    (`_invoice_fee`; unknown → none recorded)."""
    client = stripe_client()
    with stripe_errors("read the invoice"):
        invoice = client.v1.invoices.retrieve(invoice_id).to_dict()
        if invoice.get("status") != "paid":
            return
        lines = [
            line.to_dict()
            for line in client.v1.invoices.line_items.list(
                invoice_id, params={"limit": 100}
            ).auto_paging_iter()
        ]
    subscription_id = _invoice_subscription(invoice)
    if (
        subscription_id
        and not Purchase.objects.filter(stripe_subscription_id=subscription_id).exists()
    ):
        subscription_changed(subscription_id=subscription_id)  # its first invoice came first
    paid_at = _at((invoice.get("status_transitions") or {}).get("paid_at"))
    _charges_invoiced(str(invoice["id"]), lines)
    RunCharge.objects.filter(stripe_invoice_id=invoice["id"]).exclude(unpaid_since=None).update(
        unpaid_since=None, updated_at=timezone.now()
    )
    sales: list[tuple[int, int, str]] = []  # (purchase, gross, Stripe id it is keyed by)
    monthly: dict[int, int] = {}
    for line in lines:
        per_run = _per_run_purchase(line)
        if per_run is not None:
            sales.append((per_run, int(line["amount"]), str(line["id"])))
            continue
        line_subscription = _line_subscription(line)
        purchase_id = (
            Purchase.objects.filter(stripe_subscription_id=line_subscription)
            .values_list("pk", flat=True)
            .first()
            if line_subscription
            else None
        )
        if purchase_id is not None:
            monthly[purchase_id] = monthly.get(purchase_id, 0) + int(line["amount"])
    sales += [(purchase_id, gross, str(invoice["id"])) for purchase_id, gross in monthly.items()]
    if not sales:
        return
    with stripe_errors("read Stripe's fee on the invoice's payment"):
        fee, paid = _invoice_fee(client, invoice_id)
    shares = stripe_fee_shares(fee, paid, [gross for _, gross, _ in sales])
    for (purchase_id, gross, ref), share in zip(sales, shares, strict=True):
        _sale(purchase_id, gross_cents=gross, stripe_ref=ref, at=paid_at, stripe_fee_cents=share)


# --- reading and cancelling ---------------------------------------------------------------


def workspace_purchases(*, access: Access) -> QuerySet[Purchase]:
    """The workspace's own purchases, newest first (members read them; never another's)."""
    access.require(Perm.WORKSPACE_VIEW)
    return (
        Purchase.objects.filter(buyer=access.workspace)
        .select_related("listing", "version")
        .order_by("-created_at", "-id")
    )


def purchase_cancel(*, access: Access, purchase_id: int) -> Purchase:
    """Cancel a monthly purchase at the end of its paid period: canceling now, ended when
    Stripe ends the subscription (the copy runs until then). Owners and admins."""
    access.require(Perm.BILLING_MANAGE)
    purchase = Purchase.objects.filter(pk=purchase_id, buyer=access.workspace).first()
    if purchase is None:
        raise NotFound("No purchase with that id in this workspace.")
    if purchase.pricing != Purchase.Pricing.MONTHLY:
        raise PurchaseRefused(
            "Only monthly purchases can be cancelled: a one-time purchase is yours for good, and "
            "a per-run one charges only the runs you make (uninstall the copy, and archive any "
            "duplicate of it, to stop)."
        )
    if purchase.status != Purchase.Status.ACTIVE or not purchase.stripe_subscription_id:
        raise PurchaseRefused(
            f"This purchase is {purchase.get_status_display().lower()}: there is nothing to cancel."
        )
    client = stripe_client()
    with stripe_errors("cancel the subscription"):
        subscription = client.v1.subscriptions.update(
            purchase.stripe_subscription_id,
            params={"cancel_at_period_end": True},
            options={"idempotency_key": f"purchase-{purchase.pk}-cancel"},
        ).to_dict()
    _apply_subscription(subscription)
    purchase.refresh_from_db()
    purchase_audit(purchase=purchase, action=PURCHASE_CANCELED, by=access.user)
    return purchase


# --- the run gate and per-run charges ---------------------------------------------------------


def _workspace_id(schema_name: str) -> int | None:
    return Workspace.objects.filter(schema_name=schema_name).values_list("pk", flat=True).first()


OFF_RUN = {
    "chat": "in a chat",
    "shared_chat": "in a shared or embedded chat",
    "evaluation": "an evaluation's cases (they are not runs)",
    "step": "as a step of another workflow",
    "step_test": "in a step test (a test is not a run)",
}


def run_gate(event: RunStarting) -> None:
    """core.hooks.run_starting: a paid listing's copy needs a runnable purchase (402); a per-run
    purchase's copy answers only in runs (`event.surface == "run"`), the only place a success
    is charged, and stops when an invoice of per-run charges is unpaid past the grace period
    or when the workspace's AI spend (plan allowance or monthly budget) is used up (402
    budget_exceeded: a model call would be refused later, but an answer from the response
    cache would succeed and be charged).
    What the purchase says decides, not the copy's version (an upgrade keeps the purchase)."""
    if not checkout_active():
        return
    version = (
        ListingVersion.objects.select_related("listing").filter(pk=event.listing_version_id).first()
    )
    if version is None:
        return
    listing = version.listing
    buyer_id = _workspace_id(event.schema_name)
    purchases = Purchase.objects.filter(buyer_id=buyer_id, listing=listing)
    runnable = purchases.filter(status__in=RUNNABLE).first()
    if runnable is None and version.pricing == Listing.Pricing.FREE:
        return  # a free version, not bought: nothing to ask
    if runnable is not None:
        if runnable.pricing != Purchase.Pricing.PER_RUN:
            return
        if event.surface != "run":
            raise PurchaseRequired(
                f"“{listing.title}” is bought per successful run ({price_terms(runnable)}), and "
                f"only runs are charged: it cannot answer {OFF_RUN[event.surface]}. Run it from "
                "its page, the API or its own workflow instead."
            )
        if listing.kind != event.kind:  # a step agent of a per-run workflow, run on its own
            raise PurchaseRequired(
                f"This agent is a step of “{listing.title}”, a workflow bought per successful "
                f"run ({price_terms(runnable)}): it answers only in that workflow's runs, which "
                "are what is charged. Run the workflow instead."
            )
        if since := _unpaid_since(buyer_id):
            raise PurchaseRequired(
                f"“{listing.title}” is charged per run, and an invoice of this workspace's "
                f"per-run charges has been unpaid since {since:%Y-%m-%d} (past the "
                f"{settings.BILLING_GRACE_DAYS}-day grace period): an owner or admin can pay it "
                "from the workspace's Billing page (Manage payment); runs resume once it is paid."
            )
        if refusal := _spend_used_up(listing.title):
            raise BudgetExceeded(refusal)
        return
    ended = purchases.filter(status=Purchase.Status.ENDED).exclude(activated_at=None).exists()
    how = "renew it" if ended else "buy it"
    raise PurchaseRequired(
        f"“{listing.title}” is a paid listing ({price_terms(version)}) and this workspace "
        f"{'no longer has' if ended else 'has no'} active purchase of it: an owner or admin can "
        f"{how} on its marketplace page, {listing_path(listing)}."
    )


def run_charge_record(event: RunFinished) -> None:
    """core.hooks.run_finished: the buyer's first successful run is noted (reviews need one),
    and a successful run of a per-run purchase's copy is one charge (its outbox row, sent after
    commit and retried by the periodic flush). Failed and cancelled runs are never charged."""
    if not event.succeeded or event.listing_version_id is None or not checkout_active():
        return
    version = (
        ListingVersion.objects.select_related("listing").filter(pk=event.listing_version_id).first()
    )
    if version is None or version.listing.kind != event.kind:
        return  # an agent copied as a workflow's step, run on its own: the workflow is sold
    purchase = Purchase.objects.filter(
        buyer_id=_workspace_id(event.schema_name),
        listing_id=version.listing_id,
        status__in=RUNNABLE,
    ).first()
    if purchase is None:
        return
    if purchase.first_success_at is None:
        Purchase.objects.filter(pk=purchase.pk, first_success_at=None).update(
            first_success_at=timezone.now()
        )
    if purchase.pricing != Purchase.Pricing.PER_RUN:
        return
    # One row per purchase and run (a repeated hook adds nothing): one INSERT, no savepoint.
    RunCharge.objects.bulk_create(
        [
            RunCharge(
                purchase=purchase, run_id=event.run_id, amount_cents=purchase.unit_amount_cents
            )
        ],
        ignore_conflicts=True,
    )
    transaction.on_commit(_flush_soon, robust=True)


def _flush_soon() -> None:
    """Queue a flush a few seconds out, once for all the charges recorded meanwhile (a cache
    key set if absent), not one task per run; the beat flush every minute is the backstop."""
    if cache.add(FLUSH_QUEUED_KEY, 1, timeout=FLUSH_DELAY_SECONDS):
        enqueue(FLUSH_TASK, countdown=FLUSH_DELAY_SECONDS)


def _send_charge(client: stripe.StripeClient, charge: RunCharge, customer_id: str) -> str:
    purchase = charge.purchase
    item = client.v1.invoice_items.create(
        params={
            "customer": customer_id,
            "amount": charge.amount_cents,
            "currency": purchase.currency,
            "description": f"{purchase.listing.title}: run {charge.run_id}",
            "metadata": {"purchase_id": str(purchase.pk), "run_id": str(charge.run_id)},
        },
        options={"idempotency_key": charge.idempotency_key},
    )
    return str(item.id)


def run_charges_flush(client: stripe.StripeClient, *, batch_size: int = 100) -> int:
    """Send due per-run charges as invoice items on the buyer's customer (billing/meter.py's
    outbox rules: claimed with SKIP LOCKED, a failure worth retrying stops the batch and waits
    `retry_at`, a permanent refusal or too many attempts fails the row for staff). Returns how
    many were sent. Killed mid-batch: resent with the same idempotency key, added once."""
    sent = 0
    with transaction.atomic():
        rows = list(
            RunCharge.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("purchase__listing")
            .filter(status=RunCharge.Status.PENDING, next_attempt_at__lte=timezone.now())
            .order_by("id")[:batch_size]
        )
        customers = dict(
            WorkspacePlan.objects.filter(
                workspace_id__in={row.purchase.buyer_id for row in rows}
            ).values_list("workspace_id", "stripe_customer_id")
        )
        done: list[RunCharge] = []
        for row in rows:
            now = timezone.now()
            row.attempts += 1
            row.updated_at = now
            done.append(row)
            try:
                row.stripe_invoice_item_id = _send_charge(
                    client, row, customers.get(row.purchase.buyer_id, "")
                )
            except stripe.StripeError as exc:
                row.last_error = f"Stripe ({exc.http_status or 'no answer'}): {exc}"[:500]
                if permanent_refusal(exc) or row.attempts >= settings.METER_MAX_ATTEMPTS:
                    row.status = RunCharge.Status.FAILED
                    continue
                row.next_attempt_at = retry_at(row.attempts, now)
                break
            row.status, row.sent_at, row.last_error = RunCharge.Status.SENT, now, ""
            sent += 1
        if done:
            RunCharge.objects.bulk_update(done, OUTCOME_FIELDS)
    return sent


# --- invoicing per-run charges of workspaces without a subscription ----------------------------


def _charges_invoiced(invoice_id: str, lines: list[dict[str, Any]]) -> int:
    """Note on each per-run charge whose item is a line of `invoice_id` the invoice and the
    line (one UPDATE; matched by the line's `purchase_id` and `run_id`, so a charge whose flush
    has not committed yet is waited for, not missed). Returns how many were noted."""
    match, line_of = Q(), []
    for line in lines:
        purchase_id = _purchase_id(line.get("metadata"))
        run_id = str((line.get("metadata") or {}).get("run_id") or "")
        if purchase_id is not None and run_id.isdigit():
            this = Q(purchase_id=purchase_id, run_id=int(run_id))
            match |= this
            line_of.append(When(this, then=Value(str(line["id"]))))
    if not line_of:
        return 0
    return RunCharge.objects.filter(match, stripe_invoice_id="").update(
        stripe_invoice_id=invoice_id,
        stripe_invoice_line_id=Case(*line_of, default=Value("")),
        updated_at=timezone.now(),
    )


def _subscribed(workspace_id: int) -> bool:
    """Whether a subscription of the workspace's customer will invoice its pending items: the
    plan's (its id is cleared when it ends) or a monthly purchase's (while active)."""
    plan = WorkspacePlan.objects.filter(workspace_id=workspace_id).exclude(
        stripe_subscription_id=""
    )
    monthly = Purchase.objects.filter(
        buyer_id=workspace_id, pricing=Purchase.Pricing.MONTHLY, status=Purchase.Status.ACTIVE
    ).exclude(stripe_subscription_id="")
    return plan.exists() or monthly.exists()


def _uninvoiced(workspace_id: int) -> QuerySet[RunCharge]:
    return RunCharge.objects.filter(
        purchase__buyer_id=workspace_id, status=RunCharge.Status.SENT, stripe_invoice_id=""
    )


def _invoice_lines(client: stripe.StripeClient, invoice_id: str) -> list[dict[str, Any]]:
    return [
        line.to_dict()
        for line in client.v1.invoices.line_items.list(
            invoice_id, params={"limit": 100}
        ).auto_paging_iter()
    ]


def _invoice_adopt(client: stripe.StripeClient, invoice: dict[str, Any]) -> None:
    """Finish one of our standalone invoices: finalized (when a run was stopped before), and
    its lines' charges noted as taken by it."""
    if invoice.get("status") == "draft":
        client.v1.invoices.finalize_invoice(
            str(invoice["id"]), options={"idempotency_key": f"{invoice['id']}-finalize"}
        )
    _charges_invoiced(str(invoice["id"]), _invoice_lines(client, str(invoice["id"])))


def _charges_reconcile(client: stripe.StripeClient, workspace_id: int) -> None:
    """Charges still without an invoice whose item Stripe has put on one (a subscription's
    invoice that was not paid, a run stopped before it noted them) are noted as taken by it."""
    for charge in _uninvoiced(workspace_id).exclude(stripe_invoice_item_id=""):
        item = client.v1.invoice_items.retrieve(charge.stripe_invoice_item_id)
        invoice = item.invoice
        invoice_id = invoice if isinstance(invoice, str) else getattr(invoice, "id", "")
        if invoice_id:
            RunCharge.objects.filter(pk=charge.pk, stripe_invoice_id="").update(
                stripe_invoice_id=invoice_id, updated_at=timezone.now()
            )


def _workspace_invoice(
    client: stripe.StripeClient, workspace_id: int, customer_id: str, now: datetime
) -> str | None:
    """One workspace's turn (see `run_charges_invoice`), holding its advisory lock: None when
    another run holds it or nothing is due, else the invoice made."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s)",
            [advisory_key("run-charge-invoice", workspace_id)],
        )
        locked = cursor.fetchone()
        if not (locked and locked[0]):
            return None
    # Ours that a stopped run left unfinished (Stripe keeps them; its idempotency keys do not
    # outlive a day): finish them before anything else.
    listed = client.v1.invoices.list(params={"customer": customer_id, "limit": 20})
    for invoice in (found.to_dict() for found in listed.data):
        metadata = invoice.get("metadata") or {}
        ours = metadata.get("run_charges") and metadata.get("workspace_id") == str(workspace_id)
        if (
            ours
            and invoice.get("status") in ("draft", "open", "paid")
            and not RunCharge.objects.filter(stripe_invoice_id=invoice["id"]).exists()
        ):
            _invoice_adopt(client, invoice)
    due = _uninvoiced(workspace_id).aggregate(
        total=Sum("amount_cents"), oldest=Min("created_at"), last=Max("id")
    )
    if due["last"] is None or not _invoice_due(due["total"], due["oldest"], now):
        return None
    key = f"run-charges-{workspace_id}-{due['last']}"
    created = client.v1.invoices.create(
        params={
            "customer": customer_id,
            "pending_invoice_items_behavior": "include",
            "collection_method": "charge_automatically",
            "auto_advance": True,
            "description": "Runs of paid marketplace listings",
            "metadata": {"workspace_id": str(workspace_id), "run_charges": key},
        },
        options={"idempotency_key": key},
    )
    _invoice_adopt(client, created.to_dict())
    _charges_reconcile(client, workspace_id)
    return str(created.id)


def _invoice_due(total: int | None, oldest: datetime | None, now: datetime) -> bool:
    if oldest is None:
        return False
    old_enough = oldest <= now - timedelta(days=settings.RUN_CHARGE_INVOICE_DAYS)
    return old_enough or int(total or 0) >= settings.RUN_CHARGE_INVOICE_MIN_CENTS


def run_charges_invoice(client: stripe.StripeClient, *, now: datetime | None = None) -> int:
    """Invoice the sent per-run charges of workspaces without a subscription (a workspace on
    the Free plan has no invoice that would collect its pending items): one standalone invoice
    (`pending_invoice_items_behavior=include`, charged automatically, finalized) once the
    oldest is RUN_CHARGE_INVOICE_DAYS old or they add up to RUN_CHARGE_INVOICE_MIN_CENTS.
    A workspace with a subscription is left to its next invoice. Returns how many invoices were
    made. Safe to overlap (one workspace at a time, an advisory lock skipped when held) and to
    be stopped anywhere: the charges an invoice took are read from its lines, and a next run
    finishes an invoice of ours that it finds unfinished, so no charge is invoiced twice.
    Stripe failing for one workspace is logged and leaves it for the next run."""
    now = now or timezone.now()
    workspaces = (
        RunCharge.objects.filter(status=RunCharge.Status.SENT, stripe_invoice_id="")
        .values("purchase__buyer_id")
        .annotate(total=Sum("amount_cents"), oldest=Min("created_at"))
        .order_by("purchase__buyer_id")
    )
    due = [
        row["purchase__buyer_id"]
        for row in workspaces
        if _invoice_due(row["total"], row["oldest"], now)
    ]
    customers = dict(
        WorkspacePlan.objects.filter(workspace_id__in=due)
        .exclude(stripe_customer_id="")
        .values_list("workspace_id", "stripe_customer_id")
    )
    made = 0
    for workspace_id in due:
        if workspace_id not in customers or _subscribed(workspace_id):
            continue
        try:
            with transaction.atomic():
                invoice_id = _workspace_invoice(client, workspace_id, customers[workspace_id], now)
        except stripe.StripeError as exc:
            logger.warning("run charges of workspace %s not invoiced: %s", workspace_id, exc)
            continue
        if invoice_id is not None:
            logger.info("run charges of workspace %s invoiced: %s", workspace_id, invoice_id)
            made += 1
    return made


# --- charges whose run_finished was never heard ------------------------------------------------

# How far back the sweep looks, and how long it leaves a finished run to its own hook first.
RECONCILE_WINDOW = timedelta(days=7)
RECONCILE_GRACE = timedelta(minutes=5)
RECONCILE_BATCH = 500


def _uncharged_runs(
    purchase: Purchase, *, since: datetime, until: datetime, limit: int
) -> list[int]:
    """The ids of the succeeded runs of `purchase`'s copies (in the current, buyer's schema)
    that finished in [since, until) and have no charge of it: one query."""
    versions = ListingVersion.objects.filter(listing_id=purchase.listing_id).values("pk")
    charged = RunCharge.objects.filter(purchase_id=purchase.pk, run_id=OuterRef("pk"))
    runs: QuerySet[AgentRun] | QuerySet[WorkflowRun]
    if purchase.listing.kind == Listing.Kind.AGENT:
        runs = AgentRun.objects.filter(
            status=AgentRun.Status.SUCCEEDED, agent__listing_version_id__in=versions
        )
    else:
        runs = WorkflowRun.objects.filter(
            status=RunStatus.SUCCEEDED, workflow__listing_version_id__in=versions
        )
    missed = (
        runs.filter(finished_at__gte=since, finished_at__lt=until)
        .exclude(Exists(charged))
        .order_by("finished_at", "pk")
        .values_list("pk", flat=True)
    )
    return list(missed[:limit])


def run_charges_reconcile(*, now: datetime | None = None, batch_size: int = RECONCILE_BATCH) -> int:
    """Record the per-run charges `run_charge_record` missed: a worker that died between a
    run's committed success and the hook, or a database error inside the hook (hooks never
    raise), leaves a succeeded run without its charge. For each runnable per-run purchase, the
    succeeded runs of its copies in the buyer's schema that finished after the purchase was
    activated, within RECONCILE_WINDOW and at least RECONCILE_GRACE ago (the hook's own time),
    with no charge, get one: the same row the hook writes (one per purchase and run,
    `ignore_conflicts`, idempotency key `per-run-<purchase>-<run>`), so a charge the hook writes
    meanwhile is not doubled. Failed and cancelled runs are never charged. At most
    `batch_size` runs per purchase and pass (the next pass takes the rest). A purchase that is
    no longer runnable is left alone (what it missed is not charged after it ended). Returns
    how many charges were recorded; nothing while billing is off."""
    if not checkout_active():
        return 0
    now = now or timezone.now()
    by_buyer: dict[int, list[Purchase]] = {}
    for purchase in (
        Purchase.objects.filter(pricing=Purchase.Pricing.PER_RUN, status__in=RUNNABLE)
        .select_related("listing")
        .order_by("buyer_id", "pk")
    ):
        by_buyer.setdefault(purchase.buyer_id, []).append(purchase)
    recorded = 0
    for workspace in each_live_workspace(live_workspaces().filter(pk__in=by_buyer).order_by("pk")):
        for purchase in by_buyer[workspace.pk]:
            since = max(now - RECONCILE_WINDOW, purchase.activated_at or purchase.created_at)
            try:
                missed = _uncharged_runs(
                    purchase, since=since, until=now - RECONCILE_GRACE, limit=batch_size
                )
                if not missed:
                    continue
                amount = purchase.unit_amount_cents
                RunCharge.objects.bulk_create(
                    [
                        RunCharge(purchase=purchase, run_id=run, amount_cents=amount)
                        for run in missed
                    ],
                    ignore_conflicts=True,
                )
                Purchase.objects.filter(pk=purchase.pk, first_success_at=None).update(
                    first_success_at=now
                )
            except DatabaseError:
                logger.exception(
                    "per-run charges of purchase %s not reconciled (schema %s)",
                    purchase.pk,
                    workspace.schema_name,
                )
                continue
            logger.warning(
                "per-run charges recorded by the reconciliation sweep (their run_finished hook "
                "was not heard): purchase %s, %s run(s): %s",
                purchase.pk,
                len(missed),
                missed[:20],
            )
            recorded += len(missed)
    if recorded:
        transaction.on_commit(_flush_soon, robust=True)
    return recorded


def _spend_used_up(title: str) -> str:
    """Why a per-run copy's run is refused before it starts (run_gate), or "": the workspace's
    AI spend is used up, read as the gateway reads it before a model call (billing.quotas'
    allowance of a plan without overage, then the workspace's monthly budget). The model call
    would be refused anyway, but an answer from the response cache costs no AI spend and would
    succeed and be charged: a spent budget stops the listing's charges too."""
    charged = f"“{title}” is charged per successful run"
    used_up = budgets.spend_used_up()
    if used_up is None:
        return ""
    if (allowance := used_up.allowance) is not None:
        renews = date_format(timezone.localtime(allowance.period_end), "j M Y")
        return (
            f"{charged}, and this workspace has used all {cost_text(allowance.included_usd)} "
            f"of AI spend its {allowance.plan_name} plan includes until {renews}: its runs "
            "are refused until then, answers from the response cache included. An owner or "
            "admin can upgrade the plan on the Billing page."
        )
    return (
        f"{charged}, and this workspace has used all of its {cost_text(used_up.cap or 0)} "
        "monthly AI budget: its runs are refused until next month, answers from the response "
        "cache included. An owner can raise the budget on the Usage page."
    )
