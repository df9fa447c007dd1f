"""The back-office for creators' money (imported by MarketplaceConfig.ready()): purchases
(read-only, each sale with what is left to refund and a "Refund" link), the ledger
(read-only: rows are never changed), payouts (unsent ones with the error and what to do;
"Retry now", "Cancel payout"), creators' bank payouts (failed ones with what to do) and
refunds ("Add refund": a purchase, its sale, an amount up to what is left, a reason; "Retry"
for one Stripe did not finish; "Cancel refund" for a pending one Stripe never made; one Stripe
refused is shown failed, with its error). Every action goes through `marketplace.earnings` /
`marketplace.payouts`."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.views.decorators.csrf import csrf_protect

from accounts.models import User
from billing.stripe_client import stripe_mode
from core.admin import ReadOnlyAdmin
from core.exceptions import ApplicationError
from core.forms import form_add_application_error
from marketplace import earnings, payouts
from marketplace.connect import BANK_FIX_STAFF
from marketplace.models import BankPayout, LedgerEntry, Payout, Purchase, Refund


def _cents(value: int, currency: str) -> str:
    return f"{value / 100:,.2f} {currency.upper()}"


SALES_SHOWN = 50  # a per-run purchase has a sale per invoice line: the latest are shown


def _refund_url(purchase: Purchase, sale: LedgerEntry, left: int) -> str:
    query: dict[str, str | int] = {
        "purchase": purchase.pk,
        "sale_ref": sale.sale_ref,
        "amount": f"{left / 100:.2f}",
    }
    return f"{reverse('admin:marketplace_refund_add')}?{urlencode(query)}"


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdmin):
    """Workspaces' purchases of paid listings: where staff find the one to refund. Its page
    lists its sales (what the buyer paid, the fee, the creator's share, what is left to refund)
    with a "Refund" link to a refund form filled in for that sale."""

    list_display = ["created_at", "listing", "buyer", "pricing", "price", "status"]
    list_filter = ["status", "pricing", "currency"]
    search_fields = [
        "listing__title",
        "buyer__name",
        "buyer__slug",
        "stripe_checkout_session_id",
        "stripe_payment_intent_id",
        "stripe_subscription_id",
    ]
    list_select_related = ["listing", "buyer"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "listing",
        "version",
        "buyer",
        "bought_by",
        "pricing",
        "price",
        "fee_percent",
        "status",
        "sales",
        "current_period_end",
        "activated_at",
        "first_success_at",
        "ended_at",
        "stripe_checkout_session_id",
        "stripe_payment_intent_id",
        "stripe_subscription_id",
        "created_at",
    )

    @admin.display(description="Price", ordering="unit_amount_cents")
    def price(self, purchase: Purchase) -> str:
        return _cents(purchase.unit_amount_cents, purchase.currency)

    @admin.display(description="Sales (latest first) and refunds")
    def sales(self, purchase: Purchase) -> str:
        rows = earnings.purchase_sales(purchase_id=purchase.pk, limit=SALES_SHOWN)
        if not rows:
            return "No sale recorded yet (Stripe has not confirmed a payment)."
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{sale.occurred_at:%Y-%m-%d %H:%M}",
                    sale.sale_ref,
                    _cents(sale.gross_cents, sale.currency),
                    _cents(sale.fee_cents, sale.currency),
                    _cents(sale.amount_cents, sale.currency),
                    _cents(left, sale.currency),
                    format_html('<a href="{}">Refund…</a>', _refund_url(purchase, sale, left))
                    if left > 0
                    else "—",
                )
                for sale, left in rows
            ),
        )
        return format_html(  # scrolls sideways inside its row on a phone
            '<div style="overflow-x:auto;max-width:calc(100vw - 40px)">'
            "<table><thead><tr><th>Date</th><th>Sale</th><th>Buyer paid</th><th>Platform fee"
            "</th><th>Creator's share</th><th>Left to refund</th><th></th></tr></thead>"
            "<tbody>{}</tbody></table></div>",
            body,
        )


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


class PayNowForm(forms.Form):
    days_ahead = forms.IntegerField(
        label="Days ahead",
        min_value=0,
        max_value=payouts.DAYS_AHEAD_MAX,
        initial=0,
        help_text="0: as of now, what the hourly tasks would do. In Stripe test mode only, more "
        "acts as if that many days had passed (e.g. 8 to end a 7-day hold), to try a payout "
        "without waiting.",
    )


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

    def get_urls(self) -> list[URLPattern]:
        pay_now = path(
            "pay-now/",
            self.admin_site.admin_view(self.pay_now_view),
            name="marketplace_payout_pay_now",
        )
        return [pay_now, *super().get_urls()]

    def pay_now_view(self, request: HttpRequest) -> HttpResponse:
        """GET: the form. POST: end the holds that are over and pay what is available (the
        hourly tasks, at once; `payouts.creators_pay_now`), then back to the list."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = PayNowForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                report = payouts.creators_pay_now(days_ahead=form.cleaned_data["days_ahead"])
            except ApplicationError as exc:
                form_add_application_error(form, exc)
            else:
                level = messages.ERROR if report.payouts.failed else messages.SUCCESS
                self.message_user(request, f"Paid creators {report}.", level)
                return redirect(reverse("admin:marketplace_payout_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Pay creators now",
            "opts": self.opts,
            "form": form,
            "mode": stripe_mode(),
        }
        return TemplateResponse(request, "admin/marketplace/payout/pay_now.html", context)

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
                done = payouts.payout_cancel(
                    payout_id=payout.pk, by=staff, reason="Canceled by staff in the admin"
                )
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                continue
            if done.status == Payout.Status.PAID:
                self.message_user(
                    request,
                    f"Payout {done.pk} was not canceled: Stripe had already made its transfer "
                    f"({done.stripe_transfer_id}), so it is now marked paid. Nothing else to do.",
                    messages.WARNING,
                )
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
            form_add_application_error(self, exc)
        return data


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    form = RefundForm
    list_display = ["created_at", "purchase", "sale_ref", "amount", "status", "by", "last_error"]
    list_filter = ["status"]
    search_fields = ["sale_ref", "stripe_refund_id", "reason"]
    raw_id_fields = ["purchase"]
    list_select_related = ["purchase__listing", "purchase__buyer", "by"]
    actions = ["retry", "cancel_refund"]

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, refund: Refund) -> str:
        return _cents(refund.amount_cents, refund.currency)

    @method_decorator(csrf_protect)
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Without the admin's request-wide transaction: saving a refund calls Stripe, and
        `earnings.refund_complete` commits Stripe's refund id as soon as Stripe answers, so a
        later failure can never roll back the record of money that moved (nor let staff refund
        it again)."""
        view = self._changeform_view  # type: ignore[attr-defined]  # Django's, not in stubs
        response: HttpResponse = view(request, object_id, form_url, extra_context)
        return response

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
        for field in Refund._meta.concrete_fields:  # the admin's message names what was saved
            setattr(obj, field.attname, getattr(refund, field.attname))
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

    @admin.action(description="Cancel refund (only one Stripe never made)")
    def cancel_refund(self, request: HttpRequest, queryset: QuerySet[Refund]) -> None:
        staff = request.user
        assert isinstance(staff, User)  # noqa: S101 - the admin requires a signed-in staff user
        for refund in queryset:
            try:
                earnings.refund_cancel(refund_id=refund.pk, by=staff)
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"Refund {refund.pk} canceled: nothing was refunded, and its amount can be "
                    "refunded again.",
                    messages.SUCCESS,
                )
