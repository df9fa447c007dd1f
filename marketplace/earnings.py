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
from core.exceptions import ServiceUnavailable, ValidationFailed
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
) -> list[Leg]:
    """The rows that take the creator's share of `gross_back` back from `sale`: first `frozen`
    (what a dispute froze), then pending, available, paid. The paid part is reversed from the
    payout's transfer (idempotency key `<key>-reversal`) or, when Stripe refuses, is a
    clawback against the available balance. Call holding the publisher's lock."""
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
        reversal = _reverse(transfer, left, sale=sale, key=f"{key}-reversal") if transfer else ""
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


def _reverse(transfer_id: str, amount: int, *, sale: LedgerEntry, key: str) -> str:
    """Reverse `amount` of the payout transfer; the reversal's id, or "" when Stripe refused
    (the connected account's balance is short). Stripe unreachable raises (nothing is
    recorded; the caller's retry repeats the same idempotent call)."""
    try:
        reversal = stripe_client().v1.transfers.reversals.create(
            transfer_id,
            params={"amount": amount, "metadata": {"sale_ref": sale.sale_ref}},
            options={"idempotency_key": key},
        )
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as exc:
        raise ServiceUnavailable(
            f"Stripe could not be reached to reverse transfer {transfer_id}; nothing was "
            "recorded. Try again shortly."
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
    """What may still be refunded of a sale: its gross less refunds done or under way."""
    kept = _kept_gross(sale_ref)
    under_way = Refund.objects.filter(sale_ref=sale_ref, status=Refund.Status.PENDING).aggregate(
        total=Sum("amount_cents")
    )["total"]
    return kept - int(under_way or 0)


def purchase_sales(*, purchase_id: int, limit: int) -> list[tuple[LedgerEntry, int]]:
    """A purchase's latest `limit` sales, each with what may still be refunded of it."""
    sales = LedgerEntry.objects.filter(purchase_id=purchase_id, kind=Kind.SALE).order_by(
        "-occurred_at", "-id"
    )[:limit]
    return [(sale, refundable_cents(sale_ref=sale.sale_ref)) for sale in sales]


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
    if positions(sale.sale_ref)[Bucket.FROZEN] > 0:
        raise _invalid(
            "sale_ref",
            f"Sale {sale.sale_ref} is disputed: Stripe settles it with the dispute; wait for "
            "it to close before refunding.",
        )
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
    """Refund at Stripe (idempotency key `refund-<id>`), then take the creator's share back
    (see the module's docstring). Safe to call again after any failure: Stripe answers the same
    refund, and the bookkeeping is done once. Stripe failing leaves the refund pending with
    `last_error` and raises ServiceUnavailable saying what to do."""
    refund = Refund.objects.select_related("purchase").get(pk=refund_id)
    if refund.status == Refund.Status.DONE:
        return refund
    sale = sale_entry(refund.sale_ref)
    assert sale is not None  # noqa: S101 - refund_create checked it
    try:
        stripe_refund = stripe_client().v1.refunds.create(
            params=cast(
                Any,
                {
                    **_refund_target(sale),
                    "amount": refund.amount_cents,
                    "metadata": {
                        "refund_id": str(refund.pk),
                        "purchase_id": str(refund.purchase_id),
                    },
                },
            ),
            options={"idempotency_key": refund.idempotency_key},
        )
        with transaction.atomic():
            publisher_lock(sale.publisher_id)
            refund = Refund.objects.select_for_update().select_related("purchase").get(pk=refund_id)
            if refund.status == Refund.Status.DONE:
                return refund
            legs = _take_back(
                sale=sale,
                gross_back=refund.amount_cents,
                kind=Kind.REFUND,
                key=refund.idempotency_key,
                stripe_id=str(stripe_refund.id),
            )
            ledger_append(
                key=refund.idempotency_key,
                sale=sale,
                legs=legs,
                occurred_at=now or timezone.now(),
                refund=refund,
            )
            refund.status = Refund.Status.DONE
            refund.stripe_refund_id = str(stripe_refund.id)
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
            _purchase_refunded_if_whole(refund.purchase, now=now)
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
    except stripe.StripeError as exc:
        message = (
            f"Stripe did not refund {refund.sale_ref} ({exc.user_message or exc}). The refund is "
            "saved as pending: retry it from Marketplace → Refunds (action “Retry”)."
        )
        Refund.objects.filter(pk=refund_id).update(last_error=message)
        raise ServiceUnavailable(message) from exc
    except ServiceUnavailable as exc:
        Refund.objects.filter(pk=refund_id).update(
            last_error=f"{exc.message} Retry it from Marketplace → Refunds (action “Retry”)."
        )
        raise


def _purchase_refunded_if_whole(purchase: Purchase, *, now: datetime | None) -> None:
    """A purchase whose every sale went back to the buyer is refunded: it stops running."""
    kept = LedgerEntry.objects.filter(purchase=purchase).aggregate(gross=Sum("gross_cents"))[
        "gross"
    ]
    if int(kept or 0) == 0 and purchase.status != Purchase.Status.REFUNDED:
        purchase.status = Purchase.Status.REFUNDED
        purchase.ended_at = now or timezone.now()
        purchase.save(update_fields=["status", "ended_at", "updated_at"])


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
    won (or an inquiry closed) → unfrozen to where it was (available once the hold is over);
    lost → taken back like a refund of the disputed amount (reversal, else clawback).
    Idempotent and order-free: each step is recorded once, and a close first freezes.
    Returns the dispute's status, or "" when it is not about a marketplace sale."""
    now = now or timezone.now()
    dispute_id = str(dispute["id"])
    status = str(dispute.get("status") or "")
    charge = dispute.get("charge") or ""
    intent = dispute.get("payment_intent") or ""
    sales = _disputed_sales(
        charge if isinstance(charge, str) else str(charge.get("id", "")),
        intent if isinstance(intent, str) else str(intent.get("id", "")),
        int(dispute.get("amount") or 0),
    )
    if not sales:
        return ""
    with transaction.atomic():
        for publisher_id in sorted({sale.publisher_id for sale, _ in sales}):
            publisher_lock(publisher_id)
        for sale, amount in sales:
            _dispute_freeze(sale, dispute_id, amount, now)
            if status in ("won", "warning_closed"):
                _dispute_won(sale, dispute_id, now)
            elif status == "lost":
                _dispute_lost(sale, dispute_id, amount, now)
    return status


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
