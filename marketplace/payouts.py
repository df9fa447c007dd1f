"""Paying creators: one transfer per creator, period (a UTC day) and currency of their
available balance in that currency, net of any clawback, when it reaches the currency's
minimum (`minimum_payout_cents`).

    payouts_run(now=..)            # the periodic task: retry unsent payouts, then book new ones
    payout_send(payout_id=..)      # (re)send one payout's transfer (admin action "Retry now")
    payout_cancel(payout_id=.., by=staff, reason=..)  # give an unsent payout's money back
                                   # (or adopt the transfer Stripe made for it)

Never twice (docs/decisions.md): the Payout row (unique per creator, period and currency) and
the ledger rows moving its amount from available to paid are written in one transaction,
before Stripe is called, so a refund or sale arriving meanwhile cannot make the transfer and
the books disagree. The transfer is then created with the idempotency key
`payout-<creator>-<period>-<currency>` and the transfer group `payout-<id>` while holding the
Payout's row lock (SKIP LOCKED: a concurrent run leaves it alone). A run killed after Stripe
made the transfer and before the row says so leaves the payout pending; the next run calls
again with the same key, Stripe answers with the same transfer, and the row is finished. Stripe
keeps a key for 24 hours only: a payout older than IDEMPOTENCY_WINDOW first looks its transfer
up by its group and adopts it. Stripe down: the payout stays pending with the error (admin:
Payouts), retried by every run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import stripe
from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import User
from billing.stripe_client import stripe_client, stripe_mode
from core.exceptions import Conflict, ServiceUnavailable, ValidationFailed
from marketplace.earnings import (
    IDEMPOTENCY_WINDOW,
    Bucket,
    Kind,
    Leg,
    earnings_release,
    ledger_append,
    positions,
    publisher_lock,
    sale_entry,
)
from marketplace.models import CreatorAccount, LedgerEntry, Payout
from tenants import audit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PayoutReport:
    booked: int
    sent: int
    failed: int


def minimum_payout_cents(currency: str) -> int:
    """The smallest payout in `currency` (its minor unit): MARKETPLACE_MIN_PAYOUT_CENTS_BY_CURRENCY,
    else MARKETPLACE_MIN_PAYOUT_CENTS."""
    by_currency = {
        str(code).lower(): int(cents)
        for code, cents in settings.MARKETPLACE_MIN_PAYOUT_CENTS_BY_CURRENCY.items()
    }
    return by_currency.get(currency.lower(), int(settings.MARKETPLACE_MIN_PAYOUT_CENTS))


def _due() -> list[tuple[int, str]]:
    """(publisher, currency) with a positive available balance in it (the cheap pre-filter;
    the minimum and onboarding are checked under the lock)."""
    return [
        (int(row["publisher_id"]), str(row["currency"]))
        for row in LedgerEntry.objects.filter(bucket=Bucket.AVAILABLE)
        .values("publisher_id", "currency")
        .annotate(total=Sum("amount_cents"))
        .filter(total__gt=0)
        .order_by("publisher_id", "currency")
    ]


def payout_book(
    *, creator: CreatorAccount, period: str, currency: str, now: datetime
) -> tuple[Payout | None, bool]:
    """(the creator's payout for `period` in `currency`, whether this call booked it): the
    existing one, or a new one holding their whole available balance in that currency (per
    sale, so a later refund knows what was paid) when it reaches the currency's minimum and
    the account can receive payouts; None when there is nothing to pay."""
    with transaction.atomic():
        publisher_lock(creator.publisher_id)
        existing = Payout.objects.filter(creator=creator, period=period, currency=currency).first()
        if existing is not None:
            return existing, False
        if not (creator.onboarded and creator.payouts_enabled):
            return None, False
        per_sale = [
            (row["sale_ref"], int(row["total"]))
            for row in LedgerEntry.objects.filter(
                publisher_id=creator.publisher_id, bucket=Bucket.AVAILABLE, currency=currency
            )
            .values("sale_ref")
            .annotate(total=Sum("amount_cents"))
            .order_by("sale_ref")
            if row["total"]
        ]
        amount = sum(total for _, total in per_sale)
        if amount < minimum_payout_cents(currency):
            return None, False
        payout = Payout.objects.create(
            creator=creator, period=period, amount_cents=amount, currency=currency
        )
        sales = {
            sale.sale_ref: sale
            for sale in LedgerEntry.objects.filter(
                kind=Kind.SALE, sale_ref__in=[ref for ref, _ in per_sale]
            )
        }
        for sale_ref, total in per_sale:
            sale = sales[sale_ref]  # every row belongs to a recorded sale
            ledger_append(
                key=f"payout-{payout.pk}-{sale_ref}",
                sale=sale,
                legs=[
                    Leg(Bucket.AVAILABLE, Kind.PAYOUT, -total),
                    Leg(Bucket.PAID, Kind.PAYOUT, total),
                ],
                occurred_at=now,
                payout=payout,
            )
        audit.record(
            action=audit.Action.PAYOUT_CREATED,
            workspace=creator.publisher.workspace,
            target=payout,
            metadata={"amount_cents": amount, "currency": currency, "period": period},
        )
        return payout, True


def payout_send(*, payout_id: int, now: datetime | None = None) -> Payout:
    """Create (or, after a crash, re-create: the same key gives the same transfer) the payout's
    transfer and mark it paid. A payout another run is sending, or already paid, is returned
    as it is. Stripe failing leaves it pending with `last_error` (retried by the next run)."""
    now = now or timezone.now()
    with transaction.atomic():
        payout = (
            Payout.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("creator__publisher__workspace")
            .filter(pk=payout_id, status=Payout.Status.PENDING)
            .first()
        )
        if payout is None:
            return Payout.objects.get(pk=payout_id)
        payout.attempts += 1
        payout.last_attempt_at = now
        try:
            transfer = _transfer_made(payout, now=now) or stripe_client().v1.transfers.create(
                params={
                    "amount": payout.amount_cents,
                    "currency": payout.currency,
                    "destination": payout.creator.stripe_account_id,
                    "transfer_group": payout.transfer_group,
                    "description": f"Agent Market earnings, {payout.period}",
                    "metadata": {"payout_id": str(payout.pk), "period": payout.period},
                },
                options={"idempotency_key": payout.idempotency_key},
            )
        except stripe.StripeError as exc:
            payout.last_error = _what_to_do(exc)
            payout.save(update_fields=["attempts", "last_attempt_at", "last_error", "updated_at"])
            logger.warning("payout %s not sent: %s", payout.pk, exc)
            audit.record(
                action=audit.Action.PAYOUT_FAILED,
                workspace=payout.creator.publisher.workspace,
                target=payout,
                metadata={"error": str(exc), "attempts": payout.attempts},
            )
            return payout
        _mark_paid(payout, transfer, now=now)
        return payout


def _mark_paid(
    payout: Payout, transfer: stripe.Transfer, *, now: datetime, by: User | None = None
) -> None:
    """The payout is paid by `transfer`. Call holding the payout's row lock."""
    payout.status = Payout.Status.PAID
    payout.stripe_transfer_id = str(transfer.id)
    payout.paid_at = now
    payout.last_error = ""
    payout.save()
    audit.record(
        action=audit.Action.PAYOUT_SENT,
        actor=by,
        workspace=payout.creator.publisher.workspace,
        target=payout,
        metadata={
            "amount_cents": payout.amount_cents,
            "transfer": payout.stripe_transfer_id,
            "period": payout.period,
        },
    )


def _transfer_made(payout: Payout, *, now: datetime) -> stripe.Transfer | None:
    """The transfer an earlier attempt made for `payout` when Stripe may have forgotten its
    idempotency key (the payout is older than IDEMPOTENCY_WINDOW): `_transfer_found`. None when
    there is none, or the key still answers."""
    if now - payout.created_at < IDEMPOTENCY_WINDOW:
        return None
    return _transfer_found(payout)


def _transfer_found(payout: Payout) -> stripe.Transfer | None:
    """The transfer Stripe made for `payout`, found by its transfer group and destination
    (whatever the payout's age), or None."""
    found = stripe_client().v1.transfers.list(
        params={"transfer_group": payout.transfer_group, "limit": 10}
    )
    for transfer in found.data:
        if transfer.destination == payout.creator.stripe_account_id:
            logger.info("payout %s: adopting transfer %s", payout.pk, transfer.id)
            return transfer
    return None


def _what_to_do(exc: stripe.StripeError) -> str:
    if isinstance(exc, stripe.APIConnectionError | stripe.APIError | stripe.RateLimitError):
        return (
            f"Stripe could not be reached or failed ({exc}). Nothing to do: every payout run "
            "retries it with the same idempotency key (no double transfer)."
        )
    return (
        f"Stripe refused the transfer: {exc.user_message or exc}. Check the creator's Connect "
        "account (payouts enabled, requirements due) and the platform's balance in the Stripe "
        "dashboard, then use “Retry now”; or “Cancel payout” to return the amount to the "
        "creator's available balance."
    )


def payout_cancel(*, payout_id: int, by: User, reason: str, now: datetime | None = None) -> Payout:
    """Staff give up on an unsent payout: its amount goes back to available (the next period
    pays it). Only a pending payout; and first Stripe is asked for its transfer (by its
    transfer group, whatever the payout's age: a run killed after Stripe made it leaves the
    payout pending): when there is one, the payout is adopted as paid instead, and returned
    PAID (the caller tells staff). Stripe unreachable: ServiceUnavailable, nothing canceled."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(
            "Reason: say why (it is kept in the audit log).", fields={"reason": ["Required."]}
        )
    now = now or timezone.now()
    payout = Payout.objects.select_related("creator").get(pk=payout_id)
    with transaction.atomic():
        publisher_lock(payout.creator.publisher_id)
        payout = Payout.objects.select_for_update().get(pk=payout_id)
        if payout.status != Payout.Status.PENDING:
            raise ValidationFailed(
                f"Payout {payout.pk} is {payout.get_status_display().lower()}: only a payout "
                "still being sent can be canceled.",
                fields={"status": [payout.status]},
            )
        try:
            transfer = _transfer_found(payout)
        except stripe.StripeError as exc:
            raise ServiceUnavailable(
                f"Stripe could not say whether it made payout {payout.pk}'s transfer ({exc}); "
                "nothing was canceled. Try again shortly."
            ) from exc
        if transfer is not None:
            logger.warning(
                "payout %s: not canceled, Stripe made transfer %s", payout.pk, transfer.id
            )
            _mark_paid(payout, transfer, now=now, by=by)
            return payout
        for leg in LedgerEntry.objects.filter(payout=payout, bucket=Bucket.PAID):
            sale = sale_entry(leg.sale_ref)
            assert sale is not None  # noqa: S101
            ledger_append(
                key=f"payout-{payout.pk}-{leg.sale_ref}-canceled",
                sale=sale,
                legs=[
                    Leg(Bucket.PAID, Kind.PAYOUT_CANCELED, -leg.amount_cents),
                    Leg(Bucket.AVAILABLE, Kind.PAYOUT_CANCELED, leg.amount_cents),
                ],
                occurred_at=now,
                payout=payout,
            )
        payout.status = Payout.Status.CANCELED
        payout.save(update_fields=["status", "updated_at"])
        audit.record(
            action=audit.Action.PAYOUT_CANCELED,
            actor=by,
            workspace=payout.creator.publisher.workspace,
            target=payout,
            metadata={"reason": reason, "amount_cents": payout.amount_cents},
        )
    return payout


def payouts_run(*, now: datetime | None = None) -> PayoutReport:
    """Retry every unsent payout, then book and send this period's for each creator and
    currency due.
    Safe to run concurrently with itself and to be killed at any point (see the module)."""
    now = now or timezone.now()
    period = now.date().isoformat()
    booked = sent = failed = 0
    for payout_id in Payout.objects.filter(status=Payout.Status.PENDING).values_list(
        "pk", flat=True
    ):
        done = payout_send(payout_id=payout_id, now=now)
        sent += done.status == Payout.Status.PAID
        failed += done.status == Payout.Status.PENDING
    creators = CreatorAccount.objects.select_related("publisher__workspace")
    for publisher_id, currency in _due():
        creator = creators.filter(publisher_id=publisher_id).first()
        if creator is None:
            continue
        payout, booked_now = payout_book(creator=creator, period=period, currency=currency, now=now)
        if payout is None or not booked_now:  # nothing due, or a run before this one booked it
            continue
        booked += 1
        done = payout_send(payout_id=payout.pk, now=now)
        sent += done.status == Payout.Status.PAID
        failed += done.status == Payout.Status.PENDING
    return PayoutReport(booked=booked, sent=sent, failed=failed)


DAYS_AHEAD_MAX = 60


@dataclass(frozen=True)
class PayNowReport:
    as_of: datetime
    released: int  # sales whose hold ended
    payouts: PayoutReport

    def __str__(self) -> str:
        return (
            f"as of {self.as_of:%Y-%m-%d %H:%M} UTC: {self.released} sale(s) became available; "
            f"{self.payouts.booked} payout(s) booked, {self.payouts.sent} sent, "
            f"{self.payouts.failed} failed"
        )


def creators_pay_now(*, days_ahead: int = 0, now: datetime | None = None) -> PayNowReport:
    """What the hourly beat tasks do (end the holds that are over, pay available balances), at
    once. `days_ahead` acts as if that many days had passed, to see a sale become available and
    paid without waiting for the hold: Stripe test mode only (real money is never paid early).
    `manage.py pay_creators` and the Payouts admin's "Pay creators now" call this."""
    mode = stripe_mode()
    if mode == "off":
        raise Conflict("Billing is off: there is no Stripe account to pay creators from.")
    if not 0 <= days_ahead <= DAYS_AHEAD_MAX:
        raise ValidationFailed(
            f"Days ahead: from 0 to {DAYS_AHEAD_MAX} (got {days_ahead}).",
            fields={"days_ahead": [f"From 0 to {DAYS_AHEAD_MAX}."]},
        )
    if days_ahead and mode != "test":
        raise ValidationFailed(
            "Days ahead: only in Stripe test mode (real money is not paid early).",
            fields={"days_ahead": ["Only in Stripe test mode: real money is not paid early."]},
        )
    as_of = (now or timezone.now()) + timedelta(days=days_ahead)
    released = earnings_release(now=as_of)
    return PayNowReport(as_of=as_of, released=released, payouts=payouts_run(now=as_of))


class PayoutNotFinished(Exception):
    """A reversal of a transfer whose payout is not yet marked paid: the webhook is tried again
    (billing/webhooks.py's backoff) once the payout run has finished it."""


def transfer_reversals_sync(
    *,
    transfer: Mapping[str, Any],
    reversals: Sequence[Mapping[str, Any]],
    now: datetime | None = None,
) -> int:
    """Record in the ledger each reversal of a payout's transfer that was made outside our
    admin (in the Stripe dashboard); returns how many were recorded now. Pass Stripe's current
    copy of the transfer and list of its reversals. The reversed amount goes from paid back
    to available (the platform holds it again: it nets a clawback, else the next payout pays
    it), spread over the payout's sales, newest first. Our own reversals (refunds and lost disputes,
    `earnings._take_back`, which records them with their operation and marks them with
    `metadata[sale_ref]`) are left alone; each other one is recorded once (keyed by its id),
    whatever the order or number of deliveries. A transfer that is not a payout's is ignored;
    one whose payout is not marked paid yet raises PayoutNotFinished."""
    now = now or timezone.now()
    outside = [
        r
        for r in reversals
        if not (r.get("metadata") or {}).get("sale_ref")
        and not LedgerEntry.objects.filter(stripe_id=str(r["id"])).exists()
    ]
    if not outside:
        return 0
    transfer_id = str(transfer["id"])
    payout_id = str((transfer.get("metadata") or {}).get("payout_id") or "")
    if not payout_id.isdigit():  # not a payout's transfer
        return 0
    payout = (
        Payout.objects.select_related("creator__publisher__workspace")
        .filter(pk=int(payout_id))
        .first()
    )
    if payout is None or payout.status == Payout.Status.CANCELED:
        return 0
    if payout.status == Payout.Status.PENDING:
        raise PayoutNotFinished(f"payout {payout.pk} (transfer {transfer_id}) is not marked paid")
    if payout.stripe_transfer_id != transfer_id:
        return 0
    recorded = 0
    for reversal in sorted(outside, key=lambda r: (int(r.get("created") or 0), str(r["id"]))):
        with transaction.atomic():
            publisher_lock(payout.creator.publisher_id)
            if LedgerEntry.objects.filter(stripe_id=str(reversal["id"])).exists():
                continue
            recorded += _reversal_record(payout, reversal, now=now)
    return recorded


def _reversal_record(payout: Payout, reversal: Mapping[str, Any], *, now: datetime) -> int:
    """One outside reversal's rows; call holding the publisher's lock."""
    reversal_id = str(reversal["id"])
    left = int(reversal.get("amount") or 0)
    legs = LedgerEntry.objects.filter(
        payout=payout, bucket=Bucket.PAID, kind=Kind.PAYOUT, amount_cents__gt=0
    ).order_by("-sale_ref")
    for leg in legs:
        take = min(left, max(positions(leg.sale_ref)[Bucket.PAID], 0), leg.amount_cents)
        sale = sale_entry(leg.sale_ref)
        if not take or sale is None:
            continue
        ledger_append(
            key=f"reversal-{reversal_id}-{leg.sale_ref}",
            sale=sale,
            legs=[
                Leg(Bucket.PAID, Kind.TRANSFER_REVERSAL, -take, stripe_id=reversal_id),
                Leg(Bucket.AVAILABLE, Kind.TRANSFER_REVERSAL, take, stripe_id=reversal_id),
            ],
            occurred_at=now,
            payout=payout,
        )
        left -= take
        if not left:
            break
    if left:
        logger.warning(
            "reversal %s: %s cents more than payout %s paid", reversal_id, left, payout.pk
        )
    audit.record(
        action=audit.Action.TRANSFER_REVERSED,
        workspace=payout.creator.publisher.workspace,
        target=payout,
        metadata={
            "reversal": reversal_id,
            "transfer": payout.stripe_transfer_id,
            "amount_cents": int(reversal.get("amount") or 0) - left,
            "currency": payout.currency,
        },
    )
    return 1
