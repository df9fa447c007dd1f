"""A creator's money after a sale: the ledger's writes (sales, holds ending, refunds, disputes)
and its balances.

    sale_record(purchase=.., gross_cents=.., stripe_ref="ch_..", occurred_at=..)  # → pending
    earnings_release(now=..)                      # pending past the hold → available
    refund_create(purchase_id=.., sale_ref=.., amount_cents=.., reason=.., by=staff)
    refund_complete(refund_id=..)                 # Stripe refund, then the creator's share back
    dispute_sync(dispute=..)                      # freeze / release / reverse, from Stripe's copy
    balances(publisher_id=.., currency=..)        # {bucket: cents}, the sums of the rows

Invariants (docs/marketplace.md "How creators are paid"):

- Every write holds the publisher's row lock (`SELECT ... FOR UPDATE` on Publisher), so the
  sums it reads are the sums it writes against; payouts (marketplace/payouts.py) take the same
  lock. Every operation's rows share one idempotency key prefix: an operation is recorded once.
- A refund or a lost dispute takes back the creator's share of the amount, in proportion, by
  the fee split rule applied to the running total (so partial refunds add up to the whole
  share, to the cent): from what is still pending, then available, then paid. What was paid is
  reversed from the payout's transfer; when Stripe refuses the reversal (the connected account's
  balance is short) it becomes a clawback: the available balance goes negative and the next
  payouts net it.
- Every movement is also an audit event in the publisher's workspace.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import stripe
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import User
from billing.stripe_client import stripe_client
from core.exceptions import Conflict, ServiceUnavailable, ValidationFailed
from marketplace import fees
from marketplace.models import LedgerEntry, Payout, Publisher, Purchase, Refund, RunCharge
from tenants import audit
from tenants.permissions import Access

logger = logging.getLogger(__name__)

Bucket = LedgerEntry.Bucket
Kind = LedgerEntry.Kind
# The creator's balances, in the order pages show them.
BUCKETS: tuple[str, ...] = (Bucket.PENDING, Bucket.AVAILABLE, Bucket.FROZEN, Bucket.PAID)
REASON_MAX = 240
# Stripe keeps an idempotency key for at least 24 hours; with an hour's margin, an operation
# this old may have made an object its key no longer finds (marketplace/payouts.py too).
IDEMPOTENCY_WINDOW = timedelta(hours=23)
# Audit actions the money's other sides write: the buyer's workspace sees its purchase paid,
# canceled, refunded; the publisher's sees a refund Stripe refused, or one staff canceled.
PURCHASE_PAID = audit.Action.PURCHASE_PAID.value
PURCHASE_CANCELED = audit.Action.PURCHASE_CANCELED.value
PURCHASE_REFUNDED = audit.Action.PURCHASE_REFUNDED.value
REFUND_FAILED = audit.Action.REFUND_FAILED.value
REFUND_CANCELED = audit.Action.REFUND_CANCELED.value
# Dispute statuses (Stripe): closed in the seller's favour, and the ones still open.
DISPUTE_RELEASED = ("won", "warning_closed", "prevented")
DISPUTE_OPEN = ("warning_needs_response", "warning_under_review", "needs_response", "under_review")


@dataclass(frozen=True)
class Leg:
    """One row of an operation: `amount` cents of the creator's money into (or out of)
    `bucket`."""

    bucket: str
    kind: str
    amount: int
    gross: int = 0
    fee: int = 0
    stripe_id: str = ""


def publisher_lock(publisher_id: int) -> None:
    """The publisher's row lock: held by every ledger write until its transaction ends."""
    Publisher.objects.select_for_update().filter(pk=publisher_id).values_list("pk").first()


def sale_entry(sale_ref: str) -> LedgerEntry | None:
    return LedgerEntry.objects.filter(kind=Kind.SALE, sale_ref=sale_ref).first()


def _done(key: str) -> bool:
    return LedgerEntry.objects.filter(idempotency_key=f"{key}:0").exists()


def ledger_append(
    *,
    key: str,
    sale: LedgerEntry,
    legs: Iterable[Leg],
    occurred_at: datetime,
    payout: Payout | None = None,
    refund: Refund | None = None,
) -> list[LedgerEntry]:
    """Append an operation's rows for `sale`'s money. Call holding the publisher's lock."""
    rows = [
        LedgerEntry(
            publisher_id=sale.publisher_id,
            purchase_id=sale.purchase_id,
            listing_id=sale.listing_id,
            sale_ref=sale.sale_ref,
            kind=leg.kind,
            bucket=leg.bucket,
            amount_cents=leg.amount,
            gross_cents=leg.gross,
            fee_cents=leg.fee,
            currency=sale.currency,
            payout=payout,
            refund=refund,
            stripe_id=leg.stripe_id,
            available_at=sale.available_at,
            occurred_at=occurred_at,
            idempotency_key=f"{key}:{n}",
        )
        for n, leg in enumerate(legs)
    ]
    return LedgerEntry.objects.bulk_create(rows)


def _audit(*, action: str, sale: LedgerEntry, metadata: Mapping[str, Any], by: Any = None) -> None:
    publisher = Publisher.objects.select_related("workspace").get(pk=sale.publisher_id)
    audit.record(
        action=action,
        actor=by,
        workspace=publisher.workspace,
        target=sale.purchase,
        target_label=f"{publisher.display_name}: sale {sale.sale_ref}",
        metadata={"sale_ref": sale.sale_ref, "currency": sale.currency, **metadata},
    )


def positions(sale_ref: str) -> dict[str, int]:
    """Where one sale's money is now: cents per bucket."""
    rows = (
        LedgerEntry.objects.filter(sale_ref=sale_ref)
        .values("bucket")
        .annotate(total=Sum("amount_cents"))
    )
    found = {row["bucket"]: int(row["total"]) for row in rows}
    return {bucket: found.get(bucket, 0) for bucket in BUCKETS}


def _kept_gross(sale_ref: str) -> int:
    """What the buyer still has paid for a sale: its gross less what went back."""
    total = LedgerEntry.objects.filter(sale_ref=sale_ref).aggregate(gross=Sum("gross_cents"))[
        "gross"
    ]
    return int(total or 0)


def balances(*, publisher_id: int, currency: str = "usd") -> dict[str, int]:
    """The creator's balances in one currency: the sum of their rows per bucket (available may
    be negative: a clawback the next payouts net). Currencies are never added together."""
    rows = (
        LedgerEntry.objects.filter(publisher_id=publisher_id, currency=currency)
        .values("bucket")
        .annotate(total=Sum("amount_cents"))
    )
    found = {row["bucket"]: int(row["total"]) for row in rows}
    return {bucket: found.get(bucket, 0) for bucket in BUCKETS}


# --- Sales and holds


def sale_record(
    *,
    purchase: Purchase,
    gross_cents: int,
    stripe_ref: str,
    occurred_at: datetime,
    stripe_fee_cents: int | None = None,
) -> bool:
    """Record one sale's earnings: the buyer paid `gross_cents`; the platform keeps
    `fees.split(gross, purchase.fee_percent)`'s fee; the creator's share is pending until
    `occurred_at` + MARKETPLACE_EARNINGS_HOLD_DAYS. Stripe's fee, when known, is the
    platform's cost and is recorded for reporting only. Idempotent on `stripe_ref` (a charge,
    invoice line or payment intent id): recording it again does nothing and returns False."""
    if gross_cents <= 0:
        raise ValueError(f"a sale's gross is positive (got {gross_cents} for {stripe_ref})")
    fee, share = fees.split(gross_cents, purchase.fee_percent)
    available_at = occurred_at + timedelta(days=settings.MARKETPLACE_EARNINGS_HOLD_DAYS)
    with transaction.atomic():
        publisher_lock(purchase.publisher_id)
        if _done(f"sale-{stripe_ref}"):
            return False
        (sale,) = LedgerEntry.objects.bulk_create(
            [
                LedgerEntry(
                    publisher_id=purchase.publisher_id,
                    purchase=purchase,
                    listing_id=purchase.listing_id,
                    sale_ref=stripe_ref,
                    kind=Kind.SALE,
                    bucket=Bucket.PENDING,
                    amount_cents=share,
                    gross_cents=gross_cents,
                    fee_cents=fee,
                    stripe_fee_cents=stripe_fee_cents,
                    currency=purchase.currency,
                    available_at=available_at,
                    occurred_at=occurred_at,
                    idempotency_key=f"sale-{stripe_ref}:0",
                )
            ]
        )
        _audit(
            action=audit.Action.SALE_RECORDED,
            sale=sale,
            metadata={
                "gross_cents": gross_cents,
                "fee_cents": fee,
                "stripe_fee_cents": stripe_fee_cents,
                "net_cents": share,
                "available_at": available_at.isoformat(),
            },
        )
    return True


def earnings_release(*, now: datetime | None = None) -> int:
    """Move every sale's pending share whose hold has ended to available; returns how many
    sales moved. Idempotent (a sale with nothing pending is left alone); a missed tick is made
    up by the next one."""
    now = now or timezone.now()
    due = LedgerEntry.objects.filter(kind=Kind.SALE, available_at__lte=now).values("sale_ref")
    candidates = (
        LedgerEntry.objects.filter(bucket=Bucket.PENDING, sale_ref__in=due)
        .values("publisher_id", "sale_ref")
        .annotate(total=Sum("amount_cents"))
        .filter(total__gt=0)
        .order_by("publisher_id", "sale_ref")
    )
    moved = 0
    for row in candidates:
        with transaction.atomic():
            publisher_lock(row["publisher_id"])
            sale = sale_entry(row["sale_ref"])
            pending = positions(row["sale_ref"])[Bucket.PENDING]
            if sale is None or pending <= 0:
                continue
            count = LedgerEntry.objects.filter(sale_ref=sale.sale_ref).count()
            ledger_append(
                key=f"release-{sale.sale_ref}-{count}",
                sale=sale,
                legs=[
                    Leg(Bucket.PENDING, Kind.HOLD_RELEASE, -pending),
                    Leg(Bucket.AVAILABLE, Kind.HOLD_RELEASE, pending),
                ],
                occurred_at=now,
            )
            _audit(action=audit.Action.EARNINGS_AVAILABLE, sale=sale, metadata={"cents": pending})
            moved += 1
    return moved


# --- Taking a sale's money back (refunds, lost disputes)


def _share_back(sale: LedgerEntry, gross_back: int) -> tuple[int, int]:
    """(creator share, fee) to take back when `gross_back` more of the sale's gross goes back
    to the buyer: the split of the running total refunded, less what earlier refunds took."""
    percent = sale.purchase.fee_percent if sale.purchase else Decimal(0)
    kept_gross = _kept_gross(sale.sale_ref)
    refunded_before = sale.gross_cents - kept_gross
    fee_before, share_before = fees.split(refunded_before, percent)
    fee_after, share_after = fees.split(refunded_before + gross_back, percent)
    return share_after - share_before, fee_after - fee_before


def _paid_transfer(sale: LedgerEntry) -> str:
    """The transfer of the latest payout that paid this sale's money."""
    leg = (
        LedgerEntry.objects.filter(
            sale_ref=sale.sale_ref,
            kind=Kind.PAYOUT,
            bucket=Bucket.PAID,
            amount_cents__gt=0,
            payout__status=Payout.Status.PAID,
        )
        .select_related("payout")
        .order_by("-id")
        .first()
    )
    return leg.payout.stripe_transfer_id if leg is not None and leg.payout else ""


def _take_back(
    *,
    sale: LedgerEntry,
    gross_back: int,
    kind: str,
    key: str,
    stripe_id: str,
    frozen: int = 0,
    look_first: bool = False,
) -> list[Leg]:
    """The rows that take the creator's share of `gross_back` back from `sale`: first `frozen`
    (what a dispute froze), then pending, available, paid. The paid part is reversed from the
    payout's transfer (idempotency key and `metadata.key` `<key>-reversal`; with `look_first`,
    when the operation may be older than Stripe keeps keys, a reversal an earlier attempt made
    is looked up by that metadata and adopted) or, when Stripe refuses, is a clawback against
    the available balance. Call holding the publisher's lock."""
    share, fee = _share_back(sale, gross_back)
    at = positions(sale.sale_ref)
    left = share
    legs: list[Leg] = []
    for bucket, have in (
        (Bucket.FROZEN, frozen),
        (Bucket.PENDING, at[Bucket.PENDING]),
        (Bucket.AVAILABLE, at[Bucket.AVAILABLE]),
    ):
        take = min(left, max(have, 0))
        if take:
            legs.append(Leg(bucket, kind, -take, stripe_id=stripe_id))
            left -= take
    if left:
        transfer = _paid_transfer(sale)
        reversal = (
            _reverse(transfer, left, sale=sale, key=f"{key}-reversal", look_first=look_first)
            if transfer
            else ""
        )
        if reversal:
            legs.append(Leg(Bucket.PAID, Kind.TRANSFER_REVERSAL, -left, stripe_id=reversal))
        else:
            legs.append(Leg(Bucket.AVAILABLE, Kind.CLAWBACK, -left, stripe_id=stripe_id))
    if not legs:  # nothing of the creator's to take (a 100 % fee): the row still says so
        legs.append(Leg(Bucket.PAID, kind, 0, stripe_id=stripe_id))
    # the first row says what went back to the buyer and to the platform: the operation's rows
    # then sum to its gross less its fee (-share), as every operation's do
    first = legs[0]
    legs[0] = Leg(first.bucket, first.kind, first.amount, -gross_back, -fee, first.stripe_id)
    return legs


def _reverse(
    transfer_id: str, amount: int, *, sale: LedgerEntry, key: str, look_first: bool = False
) -> str:
    """Reverse `amount` of the payout transfer; the reversal's id, or "" when Stripe refused
    (the connected account's balance is short). Stripe unreachable raises (nothing is
    recorded; the caller's retry repeats the same idempotent call). `look_first`: adopt a
    reversal of the transfer whose `metadata.key` is `key` instead (made by an attempt whose
    bookkeeping did not commit, longer ago than Stripe keeps idempotency keys)."""
    client = stripe_client()
    try:
        if look_first:
            made = client.v1.transfers.reversals.list(transfer_id, params={"limit": 100})
            for found in made.data:
                if (found.to_dict().get("metadata") or {}).get("key") == key:
                    logger.info("%s: adopting reversal %s", key, found.id)
                    return str(found.id)
        reversal = client.v1.transfers.reversals.create(
            transfer_id,
            params={"amount": amount, "metadata": {"sale_ref": sale.sale_ref, "key": key}},
            options={"idempotency_key": key},
        )
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as exc:
        raise ServiceUnavailable(
            f"Stripe could not be reached to reverse transfer {transfer_id} ({exc}): the "
            "creator's share is not taken back yet. Trying again repeats the same reversal "
            "(same idempotency key)."
        ) from exc
    except stripe.StripeError as exc:
        logger.warning("transfer %s not reversed (%s): clawback instead", transfer_id, exc)
        return ""
    return str(reversal.id)


# --- Refunds (staff, from the admin)


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, fields={field: [message]})


def _refund_target(sale: LedgerEntry) -> dict[str, str]:
    """What `POST /v1/refunds` refunds for this sale: its charge or payment intent, or, for a
    sale paid on an invoice (a monthly purchase's invoice, a per-run line), the payment intent
    that paid the invoice (API 2025-03+ lists it as the invoice's `invoice_payment`; invoices
    no longer carry `payment_intent`/`charge`). Field errors say when there is none."""
    if sale.sale_ref.startswith("ch_"):
        return {"charge": sale.sale_ref}
    if sale.sale_ref.startswith("pi_"):
        return {"payment_intent": sale.sale_ref}
    if sale.purchase is not None and sale.purchase.stripe_payment_intent_id:
        return {"payment_intent": sale.purchase.stripe_payment_intent_id}
    invoice_id = _sale_invoice(sale)
    try:
        payments = stripe_client().v1.invoice_payments.list(
            params={"invoice": invoice_id, "status": "paid", "limit": 10}
        )
    except stripe.StripeError as exc:
        raise ServiceUnavailable(
            f"Stripe could not say how invoice {invoice_id} was paid ({exc.user_message or exc}); "
            "nothing was refunded. Try again shortly."
        ) from exc
    for payment in payments.data:
        details = payment.payment
        intent = getattr(details, "payment_intent", None)
        charge = getattr(details, "charge", None)
        if intent:
            return {"payment_intent": intent if isinstance(intent, str) else intent.id}
        if charge:
            return {"charge": charge if isinstance(charge, str) else charge.id}
    raise _invalid(
        "sale_ref",
        f"Sale {sale.sale_ref} was paid on invoice {invoice_id}, which Stripe has no card "
        "payment for (paid from the customer's credit balance or outside Stripe): refund it "
        "with a credit note in the Stripe dashboard.",
    )


def _sale_invoice(sale: LedgerEntry) -> str:
    """The invoice a sale was paid on: a monthly sale is keyed by it, a per-run sale by its
    line, whose run charge knows the invoice."""
    if sale.sale_ref.startswith("in_"):
        return sale.sale_ref
    invoice_id = (
        RunCharge.objects.filter(stripe_invoice_line_id=sale.sale_ref)
        .values_list("stripe_invoice_id", flat=True)
        .first()
    )
    if not invoice_id:
        raise _invalid(
            "sale_ref",
            f"Sale {sale.sale_ref} is not a charge, a payment or an invoice line whose invoice "
            "this platform knows, so it cannot be refunded from here: pick another sale, or "
            "refund it in the Stripe dashboard and correct the creator's balance.",
        )
    return invoice_id


def refundable_cents(*, sale_ref: str) -> int:
    """What may still be refunded of a sale: its gross less refunds done or under way (a
    refund Stripe refused, or one staff canceled, no longer counts)."""
    return _refundable([sale_ref])[sale_ref]


def _refundable(refs: list[str]) -> dict[str, int]:
    """`refundable_cents` of each of `refs`, in two queries."""
    kept = dict(
        LedgerEntry.objects.filter(sale_ref__in=refs)
        .values("sale_ref")
        .annotate(total=Sum("gross_cents"))
        .values_list("sale_ref", "total")
    )
    under_way = dict(
        Refund.objects.filter(sale_ref__in=refs, status=Refund.Status.PENDING)
        .values("sale_ref")
        .annotate(total=Sum("amount_cents"))
        .values_list("sale_ref", "total")
    )
    return {ref: int(kept.get(ref) or 0) - int(under_way.get(ref) or 0) for ref in refs}


def purchase_sales(*, purchase_id: int, limit: int) -> list[tuple[LedgerEntry, int]]:
    """A purchase's latest `limit` sales, each with what may still be refunded of it."""
    sales = list(
        LedgerEntry.objects.filter(purchase_id=purchase_id, kind=Kind.SALE).order_by(
            "-occurred_at", "-id"
        )[:limit]
    )
    left = _refundable([sale.sale_ref for sale in sales])
    return [(sale, left[sale.sale_ref]) for sale in sales]


def refund_check(
    *, purchase_id: int, sale_ref: str, amount_cents: int, reason: str
) -> tuple[Purchase, LedgerEntry, str]:
    """Validate a refund (the admin form shows the errors by field): (purchase, sale, reason).
    `sale_ref` blank: the purchase's latest sale. Asks Stripe how an invoice sale was paid."""
    purchase, sale, reason = _refund_valid(
        purchase_id=purchase_id, sale_ref=sale_ref, amount_cents=amount_cents, reason=reason
    )
    _refund_target(sale)
    return purchase, sale, reason


def _open_dispute(sale_ref: str) -> str:
    """The id of a dispute of the sale that is still open (its freeze is recorded, frozen
    money or none, and its close is not), or ""."""
    opened = (
        LedgerEntry.objects.filter(sale_ref=sale_ref, kind=Kind.DISPUTE_FREEZE)
        .values_list("stripe_id", flat=True)
        .distinct()
    )
    for dispute_id in opened:
        if not _done(f"dispute-{dispute_id}-{sale_ref}-closed"):
            return str(dispute_id)
    return ""


def _payout_sending(sale_ref: str) -> Payout | None:
    """A payout booked with this sale's money that is not sent yet (PENDING): a refund now
    could not reverse it and would let the whole payout go out after a clawback."""
    booked = LedgerEntry.objects.filter(
        sale_ref=sale_ref, kind=Kind.PAYOUT, bucket=Bucket.PAID, amount_cents__gt=0
    ).values("payout_id")
    return Payout.objects.filter(pk__in=booked, status=Payout.Status.PENDING).first()


def _refund_blocked(sale_ref: str) -> str:
    """Why the sale cannot be refunded now (checked when a refund is made and again when it is
    carried out or retried), or "": an open dispute, or a payout of its money being sent."""
    if dispute_id := _open_dispute(sale_ref):
        return (
            f"Sale {sale_ref} is disputed ({dispute_id}): Stripe refuses to refund a disputed "
            "charge and settles it with the dispute; wait for it to close before refunding."
        )
    if payout := _payout_sending(sale_ref):
        return (
            f"Sale {sale_ref}: a payout of this money is being sent (payout {payout.pk}, "
            f"{payout.period}): retry or cancel it in Marketplace → Payouts first, then refund."
        )
    return ""


class _MustWait(Exception):
    """Under the publisher's lock: the refund must wait (`_refund_wait`, after the rollback)."""


def _refund_wait(refund_id: int, blocked: str) -> Conflict:
    """A pending refund that must wait (`_refund_blocked`): said on the row and to the caller."""
    message = f"{blocked} The refund stays pending: retry it once that is settled."
    Refund.objects.filter(pk=refund_id).update(last_error=message, updated_at=timezone.now())
    return Conflict(message)


def _refund_valid(
    *, purchase_id: int, sale_ref: str, amount_cents: int, reason: str
) -> tuple[Purchase, LedgerEntry, str]:
    """`refund_check` without Stripe: what the publisher's lock must see still holds."""
    reason = (reason or "").strip()
    if not reason:
        raise _invalid("reason", "Reason: say why (it is kept in the publisher's audit log).")
    if len(reason) > REASON_MAX:
        raise _invalid("reason", f"Reason: at most {REASON_MAX} characters ({len(reason)} now).")
    purchase = Purchase.objects.filter(pk=purchase_id).first()
    if purchase is None:
        raise _invalid("purchase", f"Purchase {purchase_id} does not exist.")
    sales = LedgerEntry.objects.filter(purchase=purchase, kind=Kind.SALE)
    sale = (
        sales.filter(sale_ref=sale_ref).first()
        if sale_ref
        else sales.order_by("-occurred_at", "-id").first()
    )
    if sale is None:
        raise _invalid(
            "sale_ref",
            f"Sale: {sale_ref or 'this purchase has no recorded sale'} is not a sale of "
            f"purchase {purchase_id}; pick one of {[s.sale_ref for s in sales] or 'none'}.",
        )
    if blocked := _refund_blocked(sale.sale_ref):
        raise _invalid("sale_ref", blocked)
    refundable = refundable_cents(sale_ref=sale.sale_ref)
    if not 0 < amount_cents <= refundable:
        raise _invalid(
            "amount",
            f"Amount: between {_money(1, sale.currency)} and "
            f"{_money(refundable, sale.currency)} (what is left to refund of this sale); "
            f"got {_money(amount_cents, sale.currency)}.",
        )
    return purchase, sale, reason


def refund_create(
    *, purchase_id: int, sale_ref: str, amount_cents: int, reason: str, by: User | None
) -> Refund:
    """Save a refund of `amount_cents` of one sale of a purchase, validated (`refund_check`,
    Stripe asked before the lock) and checked again under the publisher's lock;
    `refund_complete` then carries it out."""
    purchase, _sale, _reason = refund_check(
        purchase_id=purchase_id, sale_ref=sale_ref, amount_cents=amount_cents, reason=reason
    )
    with transaction.atomic():
        publisher_lock(purchase.publisher_id)
        purchase, sale, reason = _refund_valid(
            purchase_id=purchase_id, sale_ref=sale_ref, amount_cents=amount_cents, reason=reason
        )
        return Refund.objects.create(
            purchase=purchase,
            sale_ref=sale.sale_ref,
            amount_cents=amount_cents,
            currency=sale.currency,
            reason=reason,
            by=by,
        )


def refund_complete(*, refund_id: int, now: datetime | None = None) -> Refund:
    """Carry out a pending refund; every step happens once, whatever fails and however often
    it is retried:

    1. the Stripe refund (idempotency key `refund-<id>`, `metadata.refund_id`): its id is saved
       as soon as Stripe answers (its own write, before anything else can fail), and a refund
       with an id is never created again; one older than IDEMPOTENCY_WINDOW without an id is
       first looked up at Stripe (Stripe may have made it, then forgotten the key);
    2. when it leaves nothing of a one-time or monthly purchase paid for, the purchase's
       subscription is canceled at Stripe (`_subscription_end`), before the books say so;
    3. under the publisher's lock: the creator's share taken back (see the module's
       docstring), the refund done, the purchase refunded (`_purchase_refunded_if_whole`).

    Stripe refusing the refund for good (an InvalidRequestError: the charge is disputed, the
    amount too large) marks it failed and raises Conflict; any other failure leaves it pending
    with `last_error` and raises ServiceUnavailable saying what to do (admin: "Retry")."""
    now = now or timezone.now()
    refund = Refund.objects.select_related("purchase").get(pk=refund_id)
    if refund.status != Refund.Status.PENDING:
        return refund
    sale = sale_entry(refund.sale_ref)
    assert sale is not None  # noqa: S101 - refund_create checked it
    if not refund.stripe_refund_id and (blocked := _refund_blocked(sale.sale_ref)):
        raise _refund_wait(refund_id, blocked)  # a payout booked or a dispute opened since
    try:
        stripe_refund_id = refund.stripe_refund_id or _stripe_refund(refund, sale, now=now)
        ended = _leaves_nothing(refund.purchase, gross_back=refund.amount_cents)
        if ended:
            _subscription_end(refund.purchase)
        with transaction.atomic():
            publisher_lock(sale.publisher_id)
            refund = Refund.objects.select_for_update().select_related("purchase").get(pk=refund_id)
            if refund.status == Refund.Status.DONE:
                return refund
            if payout := _payout_sending(sale.sale_ref):  # booked while Stripe refunded
                raise _MustWait(
                    f"Refund {stripe_refund_id} is made at Stripe, but payout {payout.pk} of "
                    "this sale's money is being sent: once it is, the retry takes the creator's "
                    "share back from its transfer."
                )
            legs = _take_back(
                sale=sale,
                gross_back=refund.amount_cents,
                kind=Kind.REFUND,
                key=refund.idempotency_key,
                stripe_id=stripe_refund_id,
                look_first=now - refund.created_at >= IDEMPOTENCY_WINDOW,
            )
            ledger_append(
                key=refund.idempotency_key, sale=sale, legs=legs, occurred_at=now, refund=refund
            )
            refund.status = Refund.Status.DONE
            refund.stripe_refund_id = stripe_refund_id
            refund.stripe_reversal_id = next(
                (leg.stripe_id for leg in legs if leg.kind == Kind.TRANSFER_REVERSAL), ""
            )
            refund.last_error = ""
            refund.save(
                update_fields=[
                    "status",
                    "stripe_refund_id",
                    "stripe_reversal_id",
                    "last_error",
                    "updated_at",
                ]
            )
            _purchase_refunded_if_whole(refund.purchase, now=now, subscription_ended=ended)
            _audit(
                action=audit.Action.REFUNDED,
                sale=sale,
                by=refund.by,
                metadata={
                    "refund_id": refund.pk,
                    "reason": refund.reason,
                    "amount_cents": refund.amount_cents,
                    "creator_cents": sum(leg.amount for leg in legs),
                    "stripe_refund": refund.stripe_refund_id,
                    "reversal": refund.stripe_reversal_id,
                    "clawback_cents": sum(leg.amount for leg in legs if leg.kind == Kind.CLAWBACK),
                },
            )
            return refund
    except _MustWait as wait:  # out of the lock's transaction, so the row keeps the reason
        raise _refund_wait(refund_id, str(wait)) from None
    except ServiceUnavailable as exc:
        made = Refund.objects.filter(pk=refund_id).values_list("stripe_refund_id", flat=True)[0]
        already = (
            f" The buyer's refund {made} is made and saved: a retry never refunds again."
            if made
            else ""
        )
        message = (
            f"{exc.message}{already} The refund is saved as pending: retry it from "
            "Marketplace → Refunds (action “Retry”)."
        )
        Refund.objects.filter(pk=refund_id).update(last_error=message, updated_at=timezone.now())
        raise ServiceUnavailable(message) from exc


def _stripe_refund(refund: Refund, sale: LedgerEntry, *, now: datetime) -> str:
    """Step 1 of `refund_complete`: the Stripe refund's id, made now (or found), saved on the
    row at once. Raises Conflict (the refund marked failed) when Stripe refuses it for good,
    ServiceUnavailable when it could not be reached or failed (nothing was refunded)."""
    target = _refund_target(sale)
    try:  # the lookup first, apart: its failing must never mark a refund Stripe made "failed"
        made = _refund_made(refund, target) if now - refund.created_at >= IDEMPOTENCY_WINDOW else ""
    except stripe.StripeError as exc:
        raise ServiceUnavailable(
            f"Stripe could not be asked whether {refund.sale_ref} was already refunded "
            f"({exc.user_message or exc}); nothing new was refunded."
        ) from exc
    try:
        made = made or str(
            stripe_client()
            .v1.refunds.create(
                params=cast(
                    Any,
                    {
                        **target,
                        "amount": refund.amount_cents,
                        "metadata": {
                            "refund_id": str(refund.pk),
                            "purchase_id": str(refund.purchase_id),
                        },
                    },
                ),
                options={"idempotency_key": refund.idempotency_key},
            )
            .id
        )
    except stripe.InvalidRequestError as exc:
        message = (
            f"Stripe refused to refund {refund.sale_ref}: {exc.user_message or exc}. Nothing "
            "was refunded and the refund is marked failed (it no longer counts against what is "
            "left to refund): once the cause is fixed, add a new refund."
        )
        with transaction.atomic():
            publisher_lock(sale.publisher_id)
            Refund.objects.filter(pk=refund.pk, status=Refund.Status.PENDING).update(
                status=Refund.Status.FAILED, last_error=message, updated_at=timezone.now()
            )
            _audit(
                action=REFUND_FAILED,
                sale=sale,
                metadata={
                    "refund_id": refund.pk,
                    "amount_cents": refund.amount_cents,
                    "error": str(exc),
                },
            )
        raise Conflict(message) from exc
    except stripe.StripeError as exc:
        raise ServiceUnavailable(
            f"Stripe did not refund {refund.sale_ref} ({exc.user_message or exc}); nothing was "
            "refunded yet."
        ) from exc
    with transaction.atomic():  # its own commit (a savepoint inside a caller's transaction)
        Refund.objects.filter(pk=refund.pk).update(stripe_refund_id=made, updated_at=timezone.now())
    refund.stripe_refund_id = made
    return made


def _refund_made(refund: Refund, target: Mapping[str, str]) -> str:
    """The id of the Stripe refund an earlier attempt made for `refund` (its
    `metadata.refund_id`, among the refunds of the charge or payment intent), or ""."""
    found = stripe_client().v1.refunds.list(params=cast(Any, {**target, "limit": 100}))
    for made in found.data:
        if (made.to_dict().get("metadata") or {}).get("refund_id") == str(refund.pk):
            logger.info("refund %s: adopting Stripe refund %s", refund.pk, made.id)
            return str(made.id)
    return ""


def refund_cancel(*, refund_id: int, by: User | None) -> Refund:
    """Staff give up on a pending refund Stripe never made (admin: "Cancel refund"): canceled,
    it no longer counts against what is left to refund. Refused once Stripe has a refund for
    it, saved or found at Stripe now by its `metadata.refund_id` whatever its age (then it is
    adopted: "Retry" finishes the bookkeeping)."""
    refund = Refund.objects.get(pk=refund_id)
    if refund.status != Refund.Status.PENDING:
        raise Conflict(
            f"Refund {refund.pk} is {refund.get_status_display().lower()}: only a refund "
            "waiting for Stripe can be canceled."
        )
    sale = sale_entry(refund.sale_ref)
    assert sale is not None  # noqa: S101 - refund_create checked it
    if not refund.stripe_refund_id:
        try:
            found = _refund_made(refund, _refund_target(sale))
        except stripe.StripeError as exc:
            raise ServiceUnavailable(
                f"Stripe could not say whether it made refund {refund.pk} ({exc}); nothing was "
                "canceled. Try again shortly."
            ) from exc
        if found:
            Refund.objects.filter(pk=refund.pk).update(stripe_refund_id=found)
            refund.stripe_refund_id = found
    if refund.stripe_refund_id:
        raise Conflict(
            f"Stripe made refund {refund.pk} ({refund.stripe_refund_id}): the buyer has the "
            "money back, so it cannot be canceled. Use “Retry” to finish it."
        )
    with transaction.atomic():
        publisher_lock(sale.publisher_id)
        canceled = Refund.objects.filter(
            pk=refund.pk, status=Refund.Status.PENDING, stripe_refund_id=""
        ).update(
            status=Refund.Status.CANCELED,
            last_error=f"Canceled by {by.email if by else 'staff'}: Stripe never refunded it.",
            updated_at=timezone.now(),
        )
        if not canceled:
            raise Conflict(f"Refund {refund.pk} changed meanwhile: reload and look again.")
        _audit(
            action=REFUND_CANCELED,
            sale=sale,
            by=by,
            metadata={"refund_id": refund.pk, "amount_cents": refund.amount_cents},
        )
    refund.refresh_from_db()
    return refund


def _kept_by(purchase: Purchase) -> int:
    """What the buyer still has paid for a purchase: its sales' gross less what went back."""
    kept = LedgerEntry.objects.filter(purchase=purchase).aggregate(gross=Sum("gross_cents"))
    return int(kept["gross"] or 0)


def _leaves_nothing(purchase: Purchase, *, gross_back: int) -> bool:
    """Whether `gross_back` more going back to the buyer refunds the whole purchase (only a
    one-time or monthly purchase is refunded as a whole; a per-run one goes on)."""
    if purchase.pricing == Purchase.Pricing.PER_RUN:
        return False
    return purchase.status != Purchase.Status.REFUNDED and _kept_by(purchase) - gross_back <= 0


def _subscription_end(purchase: Purchase) -> None:
    """Cancel a monthly purchase's subscription at Stripe now, before it is marked refunded:
    it must not bill the buyer again (idempotency key `purchase-<id>-refund-cancel`; one
    Stripe has already ended is left alone). Stripe failing raises ServiceUnavailable and the
    purchase stays as it is: the caller's retry cancels it."""
    subscription_id = purchase.stripe_subscription_id
    if (
        purchase.pricing != Purchase.Pricing.MONTHLY
        or not subscription_id
        or purchase.status == Purchase.Status.ENDED
    ):
        return
    client = stripe_client()
    try:
        try:
            client.v1.subscriptions.cancel(
                subscription_id,
                options={"idempotency_key": f"purchase-{purchase.pk}-refund-cancel"},
            )
        except stripe.InvalidRequestError:
            if client.v1.subscriptions.retrieve(subscription_id).status not in (
                "canceled",
                "incomplete_expired",
            ):
                raise
    except stripe.StripeError as exc:
        raise ServiceUnavailable(
            f"Stripe did not cancel subscription {subscription_id} of refunded purchase "
            f"{purchase.pk} ({exc.user_message or exc}): the purchase stays as it is until it "
            "is canceled, so that it does not bill the buyer again."
        ) from exc


def _purchase_refunded_if_whole(
    purchase: Purchase, *, now: datetime, subscription_ended: bool = False
) -> None:
    """A one-time or monthly purchase whose every sale went back to the buyer is refunded: it
    stops running, a monthly one's subscription canceled at Stripe first (unless the caller
    did: `subscription_ended`; Stripe failing raises, so nothing is recorded and the caller's
    retry comes back here). The buyer's workspace audits it. A per-run purchase goes on: a
    refunded run is one charge, not the purchase."""
    if purchase.pricing == Purchase.Pricing.PER_RUN or purchase.status == Purchase.Status.REFUNDED:
        return
    if _kept_by(purchase) > 0:
        return
    if not subscription_ended:
        _subscription_end(purchase)
    purchase.status = Purchase.Status.REFUNDED
    purchase.ended_at = now
    purchase.save(update_fields=["status", "ended_at", "updated_at"])
    purchase_audit(purchase=purchase, action=PURCHASE_REFUNDED)


def purchase_audit(
    *, purchase: Purchase, action: str, by: Any = None, metadata: Mapping[str, Any] | None = None
) -> None:
    """An audit event of the buyer's side of `purchase`, in the buyer's workspace
    (PURCHASE_PAID, PURCHASE_CANCELED, PURCHASE_REFUNDED)."""
    purchase = Purchase.objects.select_related("buyer", "listing").get(pk=purchase.pk)
    audit.record(
        action=action,
        actor=by,
        workspace=purchase.buyer,
        target=purchase,
        target_label=f"{purchase.listing.title} ({purchase.get_pricing_display().lower()})",
        metadata={
            "purchase_id": purchase.pk,
            "listing_id": purchase.listing_id,
            "pricing": purchase.pricing,
            "unit_amount_cents": purchase.unit_amount_cents,
            "currency": purchase.currency,
            "status": purchase.status,
            **(metadata or {}),
        },
    )


# --- Disputes (from Stripe's webhooks, re-read: marketplace/payout_events.py)


def _own_charge_sale(charge: str, payment_intent: str) -> LedgerEntry | None:
    """The sale a charge or payment intent paid by itself (a one-time purchase)."""
    refs = [ref for ref in (charge, payment_intent) if ref]
    sale = LedgerEntry.objects.filter(kind=Kind.SALE, sale_ref__in=refs).first()
    if sale is None and payment_intent:
        sale = (
            LedgerEntry.objects.filter(
                kind=Kind.SALE, purchase__stripe_payment_intent_id=payment_intent
            )
            .order_by("-occurred_at")
            .first()
        )
    return sale


def _disputed_sales(charge: str, payment_intent: str, amount: int) -> list[tuple[LedgerEntry, int]]:
    """The marketplace sales a dispute of `amount` is about, each with its part of it: a sale
    its own charge paid takes it all; the sales on the invoice a disputed payment paid (a
    monthly sale, per-run lines) share it in proportion to their gross, rounded down (the rest
    is the invoice's other lines: the plan's, the platform's)."""
    sale = _own_charge_sale(charge, payment_intent)
    if sale is not None:
        return [(sale, amount)]
    if not payment_intent:
        return []
    try:
        found = stripe_client().v1.invoice_payments.list(
            params={
                "payment": {"type": "payment_intent", "payment_intent": payment_intent},
                "limit": 1,
            }
        )
    except stripe.StripeError as exc:
        raise ServiceUnavailable(
            f"Stripe could not say which invoice payment {payment_intent} paid ({exc}); the "
            "dispute is applied when its webhook is retried."
        ) from exc
    if not found.data:
        return []
    invoice_id, paid = str(found.data[0].invoice), int(found.data[0].amount_paid or 0)
    lines = RunCharge.objects.filter(stripe_invoice_id=invoice_id).exclude(
        stripe_invoice_line_id=""
    )
    refs = [invoice_id, *lines.values_list("stripe_invoice_line_id", flat=True)]
    sales = LedgerEntry.objects.filter(kind=Kind.SALE, sale_ref__in=refs).order_by("id")
    if paid <= 0:
        return []
    return [(sale, min(sale.gross_cents, amount * sale.gross_cents // paid)) for sale in sales]


def _frozen_by(dispute_id: str, sale: LedgerEntry) -> int:
    total = LedgerEntry.objects.filter(
        Q(kind=Kind.DISPUTE_FREEZE) | Q(kind=Kind.DISPUTE_RELEASE) | Q(kind=Kind.DISPUTE_LOSS),
        stripe_id=dispute_id,
        sale_ref=sale.sale_ref,
        bucket=Bucket.FROZEN,
    ).aggregate(total=Sum("amount_cents"))["total"]
    return int(total or 0)


def dispute_sync(*, dispute: Mapping[str, Any], now: datetime | None = None) -> str:
    """Bring the ledger in line with a dispute as Stripe has it now (pass Stripe's current
    copy, not the event's), for each marketplace sale it is about (`_disputed_sales`: a
    one-time sale, or the sales on a disputed invoice payment, each with its part of the
    amount): open → the sale's disputed share that is not paid yet is frozen;
    won, prevented (or an inquiry closed) → unfrozen to where it was (available once the hold
    is over); lost → taken back like a refund of the disputed amount (reversal, else
    clawback); a status not known here is logged and stays frozen.
    Idempotent and order-free: each step is recorded once, and a close first freezes.
    Returns the dispute's status, or "" when it is not about a marketplace sale; raises
    SaleNotRecorded when it is about a purchase whose sale is not recorded yet."""
    now = now or timezone.now()
    dispute_id = str(dispute["id"])
    status = str(dispute.get("status") or "")
    charge = dispute.get("charge") or ""
    intent = dispute.get("payment_intent") or ""
    charge_id = charge if isinstance(charge, str) else str(charge.get("id", ""))
    intent_id = intent if isinstance(intent, str) else str(intent.get("id", ""))
    sales = _disputed_sales(charge_id, intent_id, int(dispute.get("amount") or 0))
    if not sales:
        _sale_not_recorded_yet(charge_id, intent_id, dispute_id)
        return ""
    if status not in (*DISPUTE_RELEASED, "lost", *DISPUTE_OPEN):
        logger.warning("dispute %s has status %r, unknown here: kept frozen", dispute_id, status)
    with transaction.atomic():
        for publisher_id in sorted({sale.publisher_id for sale, _ in sales}):
            publisher_lock(publisher_id)
        for sale, amount in sales:
            _dispute_freeze(sale, dispute_id, amount, now)
            if status in DISPUTE_RELEASED:
                _dispute_won(sale, dispute_id, now)
            elif status == "lost":
                _dispute_lost(sale, dispute_id, amount, now)
    return status


class SaleNotRecorded(Exception):
    """A dispute of a marketplace payment whose sale is not recorded yet (its webhook is still
    on its way): the dispute's webhook is tried again (billing/webhooks.py's backoff) once it
    is, so the dispute is applied to it."""


def _sale_not_recorded_yet(charge: str, payment_intent: str, dispute_id: str) -> None:
    """Raise SaleNotRecorded when the disputed payment is a marketplace purchase's (its
    payment intent or charge carries `metadata.purchase_id`; an invoice's: one of its lines
    does, or its subscription is a purchase's) though no sale of it is recorded; return when
    it is not about a marketplace sale (a plan's invoice)."""
    client = stripe_client()
    try:
        paid = (
            client.v1.payment_intents.retrieve(payment_intent)
            if payment_intent
            else client.v1.charges.retrieve(charge)
        ).to_dict()
        invoice: dict[str, Any] = {}
        if not (paid.get("metadata") or {}).get("purchase_id") and payment_intent:
            found = client.v1.invoice_payments.list(
                params={
                    "payment": {"type": "payment_intent", "payment_intent": payment_intent},
                    "limit": 1,
                }
            )
            if found.data:
                invoice = client.v1.invoices.retrieve(str(found.data[0].invoice)).to_dict()
    except stripe.StripeError as exc:
        raise ServiceUnavailable(
            f"Stripe could not say what dispute {dispute_id} is about ({exc}); it is applied "
            "when its webhook is retried."
        ) from exc
    purchase_id = (paid.get("metadata") or {}).get("purchase_id")
    lines = (invoice.get("lines") or {}).get("data") or []
    purchase_id = purchase_id or any(
        (line.get("metadata") or {}).get("purchase_id") for line in lines
    )
    subscription = (
        ((invoice.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        or invoice.get("subscription")
        or ""
    )
    if isinstance(subscription, dict):
        subscription = subscription.get("id", "")
    ours = bool(purchase_id) or (
        bool(subscription)
        and Purchase.objects.filter(stripe_subscription_id=str(subscription)).exists()
    )
    if ours:
        raise SaleNotRecorded(
            f"dispute {dispute_id}: the sale it is about (charge {charge or '-'}, payment "
            f"{payment_intent or '-'}) is not recorded yet; applied when the webhook is retried"
        )


def _dispute_freeze(sale: LedgerEntry, dispute_id: str, amount: int, now: datetime) -> None:
    key = f"dispute-{dispute_id}-{sale.sale_ref}-freeze"
    if _done(key):
        return
    kept = _kept_gross(sale.sale_ref)
    share, _fee = _share_back(sale, min(amount, kept))
    at = positions(sale.sale_ref)
    legs: list[Leg] = []
    left = share
    for bucket in (Bucket.PENDING, Bucket.AVAILABLE):
        take = min(left, max(at[bucket], 0))
        if take:
            legs += [
                Leg(bucket, Kind.DISPUTE_FREEZE, -take, stripe_id=dispute_id),
                Leg(Bucket.FROZEN, Kind.DISPUTE_FREEZE, take, stripe_id=dispute_id),
            ]
            left -= take
    # a dispute on money already paid freezes nothing; the row records that it opened
    ledger_append(
        key=key,
        sale=sale,
        legs=legs or [Leg(Bucket.FROZEN, Kind.DISPUTE_FREEZE, 0, stripe_id=dispute_id)],
        occurred_at=now,
    )
    _audit(
        action=audit.Action.DISPUTE_OPENED,
        sale=sale,
        metadata={"dispute": dispute_id, "amount_cents": amount, "frozen_cents": share - left},
    )


def _dispute_won(sale: LedgerEntry, dispute_id: str, now: datetime) -> None:
    key = f"dispute-{dispute_id}-{sale.sale_ref}-closed"
    if _done(key):
        return
    frozen = _frozen_by(dispute_id, sale)
    back_to = (
        Bucket.AVAILABLE
        if sale.available_at is None or sale.available_at <= now
        else Bucket.PENDING
    )
    legs = [
        Leg(Bucket.FROZEN, Kind.DISPUTE_RELEASE, -frozen, stripe_id=dispute_id),
        Leg(back_to, Kind.DISPUTE_RELEASE, frozen, stripe_id=dispute_id),
    ]
    ledger_append(key=key, sale=sale, legs=legs, occurred_at=now)
    _audit(
        action=audit.Action.DISPUTE_WON,
        sale=sale,
        metadata={"dispute": dispute_id, "released_cents": frozen, "to": str(back_to)},
    )


def _dispute_lost(sale: LedgerEntry, dispute_id: str, amount: int, now: datetime) -> None:
    key = f"dispute-{dispute_id}-{sale.sale_ref}-closed"
    if _done(key):
        return
    frozen = _frozen_by(dispute_id, sale)
    kept = _kept_gross(sale.sale_ref)
    legs = _take_back(
        sale=sale,
        gross_back=min(amount, kept),
        kind=Kind.DISPUTE_LOSS,
        key=key,
        stripe_id=dispute_id,
        frozen=frozen,
        look_first=True,  # its webhook may be retried for days: look before reversing again
    )
    taken = -sum(leg.amount for leg in legs if leg.bucket == Bucket.FROZEN)
    if frozen > taken:  # froze more than the loss takes (a refund came first): give it back
        legs += [
            Leg(Bucket.FROZEN, Kind.DISPUTE_RELEASE, taken - frozen, stripe_id=dispute_id),
            Leg(Bucket.AVAILABLE, Kind.DISPUTE_RELEASE, frozen - taken, stripe_id=dispute_id),
        ]
    ledger_append(key=key, sale=sale, legs=legs, occurred_at=now)
    if sale.purchase is not None:
        _purchase_refunded_if_whole(sale.purchase, now=now)
    _audit(
        action=audit.Action.DISPUTE_LOST,
        sale=sale,
        metadata={
            "dispute": dispute_id,
            "amount_cents": amount,
            "creator_cents": sum(leg.amount for leg in legs),
            "clawback_cents": sum(leg.amount for leg in legs if leg.kind == Kind.CLAWBACK),
        },
    )


def _money(cents: int, currency: str) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) / 100:,.2f} {currency.upper()}"


# --- Reads (the Earnings page, its CSV statement and the API)


@dataclass(frozen=True)
class ListingEarnings:
    listing_id: int | None
    title: str
    currency: str
    sales: int
    gross_cents: int
    fee_cents: int
    net_cents: int


def creator_publisher(*, access: Access) -> Publisher | None:
    """The publisher the workspace sells as (None: it has never published). The caller has
    checked the role (owners and admins see money)."""
    return Publisher.objects.filter(workspace=access.workspace).first()


def earnings_by_listing(*, publisher_id: int) -> list[ListingEarnings]:
    """Per listing and currency it sold in: sales, what buyers paid (less refunds), the
    platform's fee, the creator's net; biggest first (within a currency: amounts in different
    currencies are not comparable, so rows are ordered by currency first)."""
    rows = (
        LedgerEntry.objects.filter(publisher_id=publisher_id)
        .exclude(gross_cents=0, fee_cents=0)
        .values("listing_id", "listing__title", "currency")
        .annotate(
            gross=Sum("gross_cents"),
            fee=Sum("fee_cents"),
            sales=Count("id", filter=Q(kind=Kind.SALE)),
        )
        .order_by("currency", "-gross", "listing__title")
    )
    return [
        ListingEarnings(
            listing_id=row["listing_id"],
            title=row["listing__title"] or "(no listing)",
            currency=row["currency"],
            sales=int(row["sales"]),
            gross_cents=int(row["gross"]),
            fee_cents=int(row["fee"]),
            net_cents=int(row["gross"]) - int(row["fee"]),
        )
        for row in rows
    ]


def earnings_by_day(
    *, publisher_id: int, start: date, end: date
) -> dict[str, list[tuple[date, int]]]:
    """The creator's net earnings per currency and UTC day from `start` to `end` (both
    included; days without any are 0): sales less refunds and lost disputes, on the day they
    happened. Only currencies with entries in the range are keys, in code order."""
    rows = (
        LedgerEntry.objects.filter(
            publisher_id=publisher_id,
            occurred_at__date__gte=start,
            occurred_at__date__lte=end,
        )
        .exclude(gross_cents=0, fee_cents=0)
        .annotate(day=TruncDate("occurred_at", tzinfo=UTC))
        .values("currency", "day")
        .annotate(net=Sum(F("gross_cents") - F("fee_cents")))
    )
    found: dict[str, dict[date, int]] = {}
    for row in rows:
        found.setdefault(row["currency"], {})[row["day"]] = int(row["net"])
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    return {
        currency: [(day, per_day.get(day, 0)) for day in days]
        for currency, per_day in sorted(found.items())
    }


def creator_payouts(*, publisher_id: int) -> QuerySet[Payout]:
    return Payout.objects.filter(creator__publisher_id=publisher_id).order_by("-created_at")


def statement_entries(
    *, publisher_id: int, start: date | None, end: date | None
) -> QuerySet[LedgerEntry]:
    """Every ledger row of the creator between `start` and `end` (UTC days, included), oldest
    first, with its listing."""
    rows = LedgerEntry.objects.filter(publisher_id=publisher_id).select_related("listing")
    if start is not None:
        rows = rows.filter(occurred_at__date__gte=start)
    if end is not None:
        rows = rows.filter(occurred_at__date__lte=end)
    return rows.order_by("occurred_at", "id")
