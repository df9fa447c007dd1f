"""The back-office for creators' money (imported by MarketplaceConfig.ready()): the ledger
(read-only: rows are never changed), payouts (unsent ones with the error and what to do;
"Retry now", "Cancel payout"), creators' bank payouts (failed ones with what to do) and
refunds ("Add refund": a purchase, its sale, an amount up to what is left, a reason; "Retry"
for one Stripe did not finish). Every action goes through `marketplace.earnings` /
`marketplace.payouts`."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from accounts.models import User
from core.admin import ReadOnlyAdmin
from core.exceptions import ApplicationError
from marketplace import earnings, payouts
from marketplace.connect import BANK_FIX_STAFF
from marketplace.models import BankPayout, LedgerEntry, Payout, Refund


def _cents(value: int, currency: str) -> str:
    return f"{value / 100:,.2f} {currency.upper()}"


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    """Read-only: a correction is a new operation (a refund, a canceled payout), never an edit."""

    list_display = ["occurred_at", "publisher", "kind", "bucket", "amount", "sale_ref", "stripe_id"]
    list_filter = ["kind", "bucket", "currency"]
    search_fields = ["sale_ref", "stripe_id", "publisher__display_name", "idempotency_key"]
    list_select_related = ["publisher"]
    date_hierarchy = "occurred_at"

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, entry: LedgerEntry) -> str:
        return _cents(entry.amount_cents, entry.currency)


@admin.register(Payout)
class PayoutAdmin(admin.ModelAdmin):
    list_display = ["period", "creator", "amount", "status", "stripe_transfer_id", "attempts"]
    list_filter = ["status"]
    search_fields = ["stripe_transfer_id", "creator__publisher__display_name", "period"]
    list_select_related = ["creator__publisher"]
    readonly_fields = [
        "creator",
        "period",
        "amount_cents",
        "currency",
        "status",
        "stripe_transfer_id",
        "attempts",
        "last_attempt_at",
        "what_to_do",
        "paid_at",
        "created_at",
    ]
    exclude = ["last_error"]
    actions = ["retry_now", "cancel_payout"]

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, payout: Payout) -> str:
        return _cents(payout.amount_cents, payout.currency)

    @admin.display(description="Error and what to do")
    def what_to_do(self, payout: Payout) -> str:
        if payout.status != Payout.Status.PENDING:
            return "-"
        return format_html(
            "<strong>{}</strong><br>{}",
            payout.last_error or "Not sent yet.",
            "The money is booked as paid; the transfer goes out when Stripe accepts it. "
            "Retrying never makes a second transfer (same idempotency key).",
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Retry now (same idempotency key: never a second transfer)")
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        for payout in queryset.filter(status=Payout.Status.PENDING):
            done = payouts.payout_send(payout_id=payout.pk)
            if done.status == Payout.Status.PAID:
                self.message_user(
                    request, f"Payout {done.pk} sent: {done.stripe_transfer_id}.", messages.SUCCESS
                )
            else:
                self.message_user(request, f"Payout {done.pk}: {done.last_error}", messages.ERROR)

    @admin.action(description="Cancel payout (return the amount to available)")
    def cancel_payout(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        staff = request.user
        assert isinstance(staff, User)  # noqa: S101 - the admin requires a signed-in staff user
        for payout in queryset:
            try:
                payouts.payout_cancel(
                    payout_id=payout.pk, by=staff, reason="Canceled by staff in the admin"
                )
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"Payout {payout.pk} canceled.", messages.SUCCESS)


@admin.register(BankPayout)
class BankPayoutAdmin(ReadOnlyAdmin):
    """Read-only: Stripe's payouts from creators' connected accounts to their banks (from the
    Connect endpoint's `payout.*` events). A failed one needs the creator, not a retry here."""

    list_display = ["stripe_created_at", "creator", "amount", "status", "failure_code"]
    list_filter = ["status", "failure_code"]
    search_fields = ["stripe_payout_id", "creator__publisher__display_name"]
    list_select_related = ["creator__publisher"]
    readonly_fields = [
        "creator",
        "stripe_payout_id",
        "amount_cents",
        "currency",
        "status",
        "failure_code",
        "failure_message",
        "what_to_do",
        "stripe_created_at",
        "updated_at",
    ]

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, payout: BankPayout) -> str:
        return _cents(payout.amount_cents, payout.currency)

    @admin.display(description="What to do")
    def what_to_do(self, payout: BankPayout) -> str:
        return BANK_FIX_STAFF if payout.status == BankPayout.Status.FAILED else "-"


class RefundForm(forms.ModelForm):
    amount = forms.CharField(
        help_text="In the purchase's currency, e.g. 4.50 (at most what is left to refund)."
    )

    class Meta:
        model = Refund
        fields = ["purchase", "sale_ref", "reason"]
        help_texts = {
            "sale_ref": "The sale's Stripe id (a charge, payment intent, invoice, or invoice "
            "line for a per-run sale); blank: the latest.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["sale_ref"].required = False

    def clean_amount(self) -> int:
        raw = str(self.cleaned_data["amount"]).strip().replace(",", "")
        try:
            value = Decimal(raw)
        except InvalidOperation:
            message = f"Amount: enter a number like 4.50 (got {raw!r})."
            raise forms.ValidationError(message) from None
        if value != round(value, 2) or value <= 0:
            raise forms.ValidationError("Amount: more than 0, with at most two decimals.")
        return int(value * 100)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors or data.get("purchase") is None:
            return data
        try:
            earnings.refund_check(
                purchase_id=data["purchase"].pk,
                sale_ref=data.get("sale_ref") or "",
                amount_cents=data["amount"],
                reason=data.get("reason") or "",
            )
        except ApplicationError as exc:
            for field, problems in (exc.fields or {"__all__": [exc.message]}).items():
                self.add_error(field if field in self.fields else None, problems)
        return data


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    form = RefundForm
    list_display = ["created_at", "purchase", "sale_ref", "amount", "status", "by", "last_error"]
    list_filter = ["status"]
    search_fields = ["sale_ref", "stripe_refund_id", "reason"]
    raw_id_fields = ["purchase"]
    list_select_related = ["purchase__listing", "by"]
    actions = ["retry"]

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, refund: Refund) -> str:
        return _cents(refund.amount_cents, refund.currency)

    def get_readonly_fields(self, request: HttpRequest, obj: Refund | None = None) -> list[str]:
        if obj is None:
            return []
        return [f.name for f in Refund._meta.fields]

    def get_fields(self, request: HttpRequest, obj: Refund | None = None) -> list[Any]:
        if obj is None:
            return ["purchase", "sale_ref", "amount", "reason"]
        return [f.name for f in Refund._meta.fields if f.name != "id"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Refund, form: Any, change: bool) -> None:
        """Create the refund through the service (validated under the publisher's lock; errors
        name the field) and carry it out; Stripe failing leaves it pending for "Retry"."""
        if change:
            return
        refund = earnings.refund_create(
            purchase_id=form.cleaned_data["purchase"].pk,
            sale_ref=form.cleaned_data.get("sale_ref") or "",
            amount_cents=form.cleaned_data["amount"],
            reason=form.cleaned_data["reason"],
            by=request.user,  # type: ignore[arg-type]
        )
        obj.pk = refund.pk
        obj._state.adding = False
        try:
            earnings.refund_complete(refund_id=refund.pk)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    @admin.action(description="Retry (Stripe refunds once per refund row)")
    def retry(self, request: HttpRequest, queryset: QuerySet[Refund]) -> None:
        for refund in queryset.filter(status=Refund.Status.PENDING):
            try:
                earnings.refund_complete(refund_id=refund.pk)
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"Refund {refund.pk} done.", messages.SUCCESS)
