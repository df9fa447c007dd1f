from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import stripe
from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from billing.backoffice import (
    MAX_TRIAL_DAYS,
    REASON_MAX,
    credit_grant,
    plan_comp,
    trial_extend,
    webhook_trigger_replay,
)
from billing.meter import meter_retry
from billing.models import (
    CreditGrant,
    MeterOutbox,
    ModelPrice,
    Plan,
    StripeEvent,
    StripeInvoice,
    StripeMirrorSync,
    StripeWebhook,
    WorkspacePlan,
)
from billing.stripe_client import stripe_client
from billing.stripe_sync import plans_sync
from core.admin import ReadOnlyAdmin
from core.exceptions import ApplicationError, ValidationFailed


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "provider",
        "model",
        "input_per_mtok",
        "output_per_mtok",
        "cached_input_per_mtok",
        "cache_write_per_mtok",
        "updated_at",
    )
    list_editable = (
        "input_per_mtok",
        "output_per_mtok",
        "cached_input_per_mtok",
        "cache_write_per_mtok",
    )
    list_filter = ("provider",)
    search_fields = ("model",)


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "key",
        "monthly_price_cents",
        "yearly_price_cents",
        "included_ai_spend_usd",
        "runs_per_month",
        "seats",
        "workflows",
        "allows_overage",
        "trial_days",
        "is_default",
        "is_public",
    )
    list_filter = ("is_public", "allows_overage")
    search_fields = ("key", "name")
    prepopulated_fields = {"key": ("name",)}
    fieldsets = (
        (None, {"fields": ("name", "key", "description", "is_default", "is_public", "sort_order")}),
        (
            "Price (US cents)",
            {"fields": ("monthly_price_cents", "yearly_price_cents", "trial_days")},
        ),
        (
            "Allowances (empty: unlimited)",
            {
                "fields": (
                    "included_ai_spend_usd",
                    "runs_per_month",
                    "seats",
                    "workflows",
                    "knowledge_storage_mb",
                    "api_requests_per_minute",
                    "allows_overage",
                    "features",
                )
            },
        ),
    )

    actions = ("mirror_to_stripe",)

    def has_delete_permission(self, request: HttpRequest, obj: Plan | None = None) -> bool:
        # A plan with workspaces on it is protected by the database too; say it here first.
        return obj is None or not obj.workspaces.exists()

    @admin.action(
        description="Mirror every plan to Stripe now (billing_sync_plans)", permissions=["change"]
    )
    def mirror_to_stripe(self, request: HttpRequest, queryset: QuerySet[Plan]) -> None:
        """What `manage.py billing_sync_plans` does, for staff who just changed a price or an
        allowance (all plans: a sync is cheap and idempotent)."""
        try:
            report = plans_sync(stripe_client())
        except ApplicationError as exc:  # billing off, a bad markup
            self.message_user(request, exc.message, messages.ERROR)
            return
        except stripe.StripeError as exc:
            self.message_user(
                request, f"Stripe refused the sync: {exc.user_message or exc}", messages.ERROR
            )
            return
        created = ", ".join(report.created) or "none"
        self.message_user(
            request,
            f"Plans mirrored to Stripe: new prices {created}; {len(report.unchanged)} kept.",
            messages.SUCCESS,
        )


class GrantCreditForm(forms.Form):
    amount_usd = forms.DecimalField(
        label="Amount ($)",
        max_digits=12,
        decimal_places=2,
        help_text="Dollars of AI spend (model cost) added to this period's allowance.",
    )
    reason = forms.CharField(max_length=REASON_MAX, widget=forms.Textarea(attrs={"rows": 2}))


class ExtendTrialForm(forms.Form):
    days = forms.IntegerField(
        min_value=1,
        max_value=MAX_TRIAL_DAYS,
        help_text="Added to the trial's end (counted from now if the trial has ended).",
    )
    reason = forms.CharField(max_length=REASON_MAX, widget=forms.Textarea(attrs={"rows": 2}))


class CompPlanForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.objects.all())
    until = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),  # the browser's picker: no admin JS
        help_text="The last day on this plan; empty: until staff change it.",
    )
    reason = forms.CharField(max_length=REASON_MAX, widget=forms.Textarea(attrs={"rows": 2}))


@dataclass(frozen=True)
class BackOfficeAction:
    slug: str
    title: str
    form: type[forms.Form]
    run: Callable[[WorkspacePlan, dict[str, Any], Any], str]  # returns the success message


def _grant(row: WorkspacePlan, data: dict[str, Any], by: Any) -> str:
    grant = credit_grant(
        workspace_id=row.workspace_id, amount_usd=data["amount_usd"], reason=data["reason"], by=by
    )
    return f"Granted ${grant.amount_usd} of AI spend to {row.workspace} for this period."


def _extend(row: WorkspacePlan, data: dict[str, Any], by: Any) -> str:
    row = trial_extend(
        workspace_id=row.workspace_id, days=data["days"], reason=data["reason"], by=by
    )
    return f"{row.workspace}'s trial now ends {row.trial_ends_at:%Y-%m-%d %H:%M}."


def _comp(row: WorkspacePlan, data: dict[str, Any], by: Any) -> str:
    row = plan_comp(
        workspace_id=row.workspace_id,
        plan=data["plan"],
        until=data["until"],
        reason=data["reason"],
        by=by,
    )
    until = f"through {data['until']:%Y-%m-%d}" if data["until"] else "indefinitely"
    return f"{row.workspace} is on {row.plan} {until}, without a subscription."


BACK_OFFICE_ACTIONS = (
    BackOfficeAction("grant-credit", "Grant AI-spend credit", GrantCreditForm, _grant),
    BackOfficeAction("extend-trial", "Extend the trial", ExtendTrialForm, _extend),
    BackOfficeAction("comp-plan", "Comp a plan", CompPlanForm, _comp),
)


@admin.register(WorkspacePlan)
class WorkspacePlanAdmin(admin.ModelAdmin):
    """Every workspace's plan and subscription. Rows are read-only here: plans change through
    subscriptions (webhooks) or the audited back-office actions linked from each row."""

    list_display = (
        "workspace",
        "plan",
        "status",
        "period",
        "runs",
        "trial_ends_at",
        "comped",
        "cancel_at_period_end",
    )
    list_filter = ("status", "plan", "comped")
    search_fields = (
        "workspace__name",
        "workspace__slug",
        "stripe_customer_id",
        "stripe_subscription_id",
    )
    list_select_related = ("workspace", "plan")
    fields = (
        "workspace",
        "plan",
        "status",
        "back_office",
        "current_period_start",
        "current_period_end",
        "runs_used",
        "trial_ends_at",
        "comped",
        "comp_ends_at",
        "cancel_at_period_end",
        "grace_ends_at",
        "credit_grants",
        "stripe_customer_id",
        "stripe_subscription_id",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # every workspace gets its row when it is created

    def has_delete_permission(self, request: HttpRequest, obj: WorkspacePlan | None = None) -> bool:
        return False

    @admin.display(description="Period")
    def period(self, obj: WorkspacePlan) -> str:
        return f"{obj.current_period_start:%Y-%m-%d} – {obj.current_period_end:%Y-%m-%d}"

    @admin.display(description="Runs used / allowance", ordering="runs_used")
    def runs(self, obj: WorkspacePlan) -> str:
        limit = obj.plan.runs_per_month
        return f"{obj.runs_used} / {'unlimited' if limit is None else limit}"

    @admin.display(description="Back-office")
    def back_office(self, obj: WorkspacePlan) -> str:
        return format_html_join(
            " · ",
            '<a href="{}">{}</a>',
            (
                (reverse(f"admin:{self._url_name(action.slug)}", args=[obj.pk]), action.title)
                for action in BACK_OFFICE_ACTIONS
            ),
        )

    @admin.display(description="Credit grants")
    def credit_grants(self, obj: WorkspacePlan) -> str:
        grants = CreditGrant.objects.filter(workspace_id=obj.workspace_id).select_related(
            "granted_by"
        )[:20]
        return (
            format_html_join(
                mark_safe("<br>"),
                "{}: ${} for {} – {} by {} ({})",
                (
                    (
                        f"{grant.created_at:%Y-%m-%d}",
                        grant.amount_usd,
                        f"{grant.period_start:%Y-%m-%d}",
                        f"{grant.period_end:%Y-%m-%d}",
                        grant.granted_by or "-",
                        grant.reason,
                    )
                    for grant in grants
                ),
            )
            or "none"
        )

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # Every field is read-only: the row changes through the back-office actions.
        context = {"show_save": False, "show_save_and_continue": False, **(extra_context or {})}
        return super().changeform_view(request, object_id, form_url, context)

    def _url_name(self, slug: str) -> str:
        return f"billing_workspaceplan_{slug.replace('-', '_')}"

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                f"<path:object_id>/{action.slug}/",
                self.admin_site.admin_view(partial(self.back_office_view, action=action)),
                name=self._url_name(action.slug),
            )
            for action in BACK_OFFICE_ACTIONS
        ] + super().get_urls()

    def back_office_view(
        self, request: HttpRequest, object_id: str, *, action: BackOfficeAction
    ) -> HttpResponse:
        """GET: the action's form. POST: run it (one audited service call), back to the row."""
        row = self.get_object(request, object_id)
        if row is None:
            raise Http404("No such workspace plan.")
        if not self.has_change_permission(request, row):
            raise PermissionDenied
        form = action.form(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                message = action.run(row, form.cleaned_data, request.user)
            except ValidationFailed as exc:
                for field, errors in (exc.fields or {"": [exc.message]}).items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
            else:
                self.message_user(request, message, messages.SUCCESS)
                return redirect(reverse("admin:billing_workspaceplan_change", args=[row.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"{action.title}: {row.workspace}",
            "opts": self.opts,
            "original": row,
            "form": form,
            "action": action,
        }
        return TemplateResponse(request, "admin/billing/back_office_action.html", context)


@admin.register(CreditGrant)
class CreditGrantAdmin(ReadOnlyAdmin):
    """The ledger of staff grants: read-only (a grant is never edited or deleted)."""

    list_display = (
        "created_at",
        "workspace",
        "amount_usd",
        "period_start",
        "period_end",
        "granted_by",
        "reason",
    )
    search_fields = ("workspace__name", "workspace__slug", "reason")
    list_select_related = ("workspace", "granted_by")
    date_hierarchy = "created_at"


@admin.register(MeterOutbox)
class MeterOutboxAdmin(ReadOnlyAdmin):
    """The meter events on their way to Stripe (read-only: billing.meter writes them)."""

    list_display = (
        "id",
        "status",
        "workspace",
        "event_name",
        "value",
        "occurred_at",
        "attempts",
        "next_attempt_at",
        "last_error",
        "sent_at",
    )
    list_filter = ("status", "event_name")
    search_fields = ("workspace__name", "workspace__slug", "stripe_customer_id", "last_error")
    list_select_related = ("workspace",)
    date_hierarchy = "occurred_at"
    actions = ("retry_now",)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        # rows are never edited by hand, but staff allowed to change them may requeue them
        return request.user.has_perm("billing.change_meteroutbox")

    @admin.action(description="Retry the selected failed rows now", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[MeterOutbox]) -> None:
        count = meter_retry(ids=queryset.values_list("pk", flat=True))
        self.message_user(
            request,
            f"{count} failed row(s) are pending again; the next flush (within 30 s) sends them.",
            messages.SUCCESS,
        )


def _hide_djstripe_admin() -> None:
    """dj-stripe registers ~45 model admins; nothing here uses those models yet (billing keeps
    its own tables and calls Stripe directly), so they only crowd the back-office index.
    Re-register the ones billing starts to use, when it does. (djstripe's admin module is
    imported before this one: it comes first in INSTALLED_APPS.)"""
    for model in apps.get_app_config("djstripe").get_models():
        if admin.site.is_registered(model):
            admin.site.unregister(model)


_hide_djstripe_admin()


# --- Stripe's webhook log (proxies of dj-stripe's models: its own admins are hidden above) ---


@admin.register(StripeWebhook)
class WebhookEventLogAdmin(ReadOnlyAdmin):
    """Every webhook request Stripe sent: received, processed or failed (with the exception
    and traceback), and a *Replay* action that processes the selected ones again. Read-only
    otherwise (dj-stripe's own admin for it has no replay action)."""

    list_display = ("created", "event_type", "outcome", "exception", "remote_ip")
    list_filter = ("processed", "valid", "created")
    list_select_related = ("event",)
    search_fields = ("event__id", "event__type", "exception")
    readonly_fields = ("event", "webhook_endpoint", "stripe_trigger_account")
    actions = ("replay",)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.change_stripewebhook")

    @admin.display(description="Event")
    def event_type(self, obj: StripeWebhook) -> str:
        if obj.event is not None:
            return f"{obj.event.type} ({obj.event.id})"
        return str(obj.json_body.get("type") or "-")

    @admin.display(description="Outcome")
    def outcome(self, obj: StripeWebhook) -> str:
        if not obj.valid:
            return "refused (signature)"
        if obj.processed:
            return "processed"
        return "failed" if obj.exception else "received"

    @admin.action(
        description="Replay the selected webhooks (process them again)",
        permissions=["replay"],
    )
    def replay(self, request: HttpRequest, queryset: QuerySet[StripeWebhook]) -> None:
        for trigger in queryset:
            try:
                event = webhook_trigger_replay(trigger=trigger)
            except ValidationFailed as exc:
                self.message_user(request, exc.message, messages.WARNING)
            except Exception as exc:  # recorded on the trigger; say so and go on
                self.message_user(
                    request, f"Webhook {trigger.pk} failed again: {exc}", messages.ERROR
                )
            else:
                done = "processed" if event is not None else "queued for the workers"
                self.message_user(request, f"Webhook {trigger.pk} {done}.", messages.SUCCESS)


@admin.register(StripeMirrorSync)
class StripeMirrorSyncAdmin(ReadOnlyAdmin):
    """Refreshes of dj-stripe's mirror that webhooks owe (billing/stripe_mirror.py): normally
    gone within seconds; a row with attempts and an error is failing and retried with backoff
    (the billing page's invoice list lags Stripe until it succeeds)."""

    list_display = ("key", "event_type", "event_id", "due_at", "attempts", "last_error")
    list_filter = ("event_type",)
    search_fields = ("key", "event_id", "last_error")


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    """The Stripe events dj-stripe stored from webhooks (read-only)."""

    list_display = ("id", "type", "created", "livemode")
    list_filter = ("type", "created")
    search_fields = ("id", "type")


@admin.register(StripeInvoice)
class StripeInvoiceAdmin(ReadOnlyAdmin):
    """Every workspace's invoices, as Stripe sent them (read-only; amounts in the invoice's
    currency), with the link to Stripe's hosted page."""

    list_display = ("created", "number", "customer", "subscription", "status", "total", "link")
    list_select_related = ("customer", "subscription")
    search_fields = ("id", "customer__id", "customer__email", "subscription__id")
    list_filter = ("created",)

    @admin.display(description="Number")
    def number(self, obj: StripeInvoice) -> str:
        return str(obj.stripe_data.get("number") or "-")

    @admin.display(description="Status")
    def status(self, obj: StripeInvoice) -> str:
        return str(obj.stripe_data.get("status") or "-")

    @admin.display(description="Total")
    def total(self, obj: StripeInvoice) -> str:
        cents = obj.stripe_data.get("total") or 0
        return f"{cents / 100:,.2f} {str(obj.stripe_data.get('currency') or '').upper()}"

    @admin.display(description="Invoice page")
    def link(self, obj: StripeInvoice) -> str:
        url = obj.stripe_data.get("hosted_invoice_url")
        return format_html('<a href="{}" rel="noopener">open</a>', url) if url else "-"
