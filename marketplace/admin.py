"""The marketplace back-office: the moderation queue (a version's change page shows the
listing, its price and the publisher's payouts status, a diff against the previous version and
the decision form), listings with unlist/relist, flags with resolve, the platform fee rules
(audited), and read-only creator payout accounts, reviews and installs. Every decision goes
through `marketplace.services`."""

from __future__ import annotations

import difflib
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.utils.html import format_html, format_html_join

from billing.stripe_client import stripe_mode
from core.admin import ReadOnlyAdmin
from core.exceptions import ApplicationError
from marketplace import services
from marketplace.connect import payout_status, requirement_words
from marketplace.models import (
    Category,
    CreatorAccount,
    FeeRule,
    Flag,
    Install,
    Listing,
    ListingVersion,
    Publisher,
    Review,
)
from marketplace.pricing import price_label


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "icon", "position"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Publisher)
class PublisherAdmin(admin.ModelAdmin):
    list_display = ["display_name", "slug", "workspace", "verified", "created_at"]
    list_filter = ["verified"]
    search_fields = ["display_name", "slug"]
    readonly_fields = ["workspace", "created_at"]


class VersionInline(admin.TabularInline):
    model = ListingVersion
    fields = ("number", "status", "changelog", "moderated_by", "moderated_at", "created_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "kind",
        "publisher",
        "category",
        "current_version",
        "install_count",
        "rating_avg",
        "unlisted_at",
    ]
    list_filter = [
        "kind",
        "category",
        "featured",
        "pricing",
        ("unlisted_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["title", "slug", "summary", "publisher__display_name"]
    readonly_fields = [
        "publisher",
        "kind",
        "current_version",
        "unlisted_at",
        "unlisted_reason",
        "providers",
        "install_count",
        "review_count",
        "rating_avg",
        "run_count",
        "success_rate",
        "p95_latency_ms",
        "median_cost_usd",
        "published_at",
        "created_at",
        "updated_at",
    ]
    inlines = [VersionInline]
    actions = ["unlist", "relist"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # listings are published from a workspace or imported

    @admin.action(description="Unlist the selected listings (hidden from browsing and installs)")
    def unlist(self, request: HttpRequest, queryset: QuerySet[Listing]) -> None:
        for listing in queryset:
            services.listing_unlist(user=request.user, listing=listing, reason="Unlisted by staff")
        self.message_user(request, f"Unlisted {len(queryset)} listing(s).")

    @admin.action(description="Relist the selected listings")
    def relist(self, request: HttpRequest, queryset: QuerySet[Listing]) -> None:
        for listing in queryset:
            services.listing_relist(user=request.user, listing=listing)
        self.message_user(request, f"Relisted {len(queryset)} listing(s).")


def _transfers_text(account: CreatorAccount) -> str:
    return f"transfers capability {'active' if account.transfers_active else 'not active'}"


def _payout_text(account: CreatorAccount | None) -> str:
    """The account's payouts status for staff, with Stripe's `transfers` capability (what our
    transfers to the creator need)."""
    status = payout_status(account)
    if account is None:
        return "Not set up"
    if status.state == "onboarded":
        return f"Onboarded ({_transfers_text(account)})"
    if status.state == "disabled":
        return f"Disabled: {status.disabled} ({_transfers_text(account)})"
    if status.requirements:
        return f"Requirements due: {'; '.join(status.requirements)} ({_transfers_text(account)})"
    return f"Pending verification ({_transfers_text(account)})"


def _pretty(definition: Any) -> list[str]:
    return json.dumps(definition, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def definition_diff(version: ListingVersion) -> str:
    """A unified diff of the definition against the previous version ("" for version 1)."""
    previous = (
        ListingVersion.objects.filter(listing_id=version.listing_id, number__lt=version.number)
        .order_by("-number")
        .first()
    )
    if previous is None:
        return ""
    lines = difflib.unified_diff(
        _pretty(previous.definition),
        _pretty(version.definition),
        fromfile=f"v{previous.number}",
        tofile=f"v{version.number}",
        lineterm="",
    )
    return "\n".join(lines)


class ModerationForm(forms.ModelForm):
    decision = forms.ChoiceField(
        choices=[
            ("approve", "Approve"),
            ("reject", "Reject"),
            ("request_changes", "Request changes"),
        ],
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        help_text="Required to reject or request changes; the publisher sees it.",
    )

    class Meta:
        model = ListingVersion
        fields: list[str] = []

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if (
            data.get("decision") in ("reject", "request_changes")
            and not (data.get("reason") or "").strip()
        ):
            self.add_error("reason", "Give a reason for the publisher.")
        return data


@admin.register(ListingVersion)
class ListingVersionAdmin(admin.ModelAdmin):
    """The moderation queue."""

    form = ModerationForm
    list_display = [
        "__str__",
        "status",
        "price",
        "payouts",
        "submitted_by",
        "created_at",
        "moderated_by",
    ]
    list_filter = ["status", "listing__kind", "pricing"]
    list_select_related = [
        "listing__publisher__creator_account",
        "submitted_by",
        "moderated_by",
    ]
    search_fields = ["listing__title", "listing__slug"]
    ordering = ["status", "created_at"]
    readonly_fields = [
        "listing",
        "listing_summary",
        "number",
        "status",
        "price",
        "payouts",
        "changelog",
        "required_tools",
        "required_providers",
        "example_inputs",
        "submitted_by",
        "created_at",
        "moderation_reason",
        "moderated_by",
        "moderated_at",
        "changes",
        "definition_json",
    ]
    actions = ["approve"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(self.readonly_fields)
        if obj is not None and obj.status == ListingVersion.Status.PENDING:
            fields += ["decision", "reason"]
        return fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        if not request.GET and request.method == "GET":  # the queue opens on what waits
            return HttpResponseRedirect(f"{request.path}?status__exact=pending")
        return super().changelist_view(request, extra_context)

    @admin.display(description="Listing")
    def listing_summary(self, obj: ListingVersion) -> str:
        listing = obj.listing
        return format_html(
            "<strong>{}</strong> ({}, {}) by {}<br>{}<br>Tags: {}<br><pre>{}</pre>",
            listing.title,
            listing.get_kind_display(),
            listing.category,
            listing.publisher,
            listing.summary,
            ", ".join(listing.tags) or "—",
            listing.description,
        )

    @admin.display(description="Price", ordering="price_cents")
    def price(self, obj: ListingVersion) -> str:
        return price_label(obj)

    @admin.display(description="Publisher's payouts")
    def payouts(self, obj: ListingVersion) -> str:
        """For a paid version: may the publisher be paid? ("—" for a free one.)"""
        if obj.pricing == Listing.Pricing.FREE:
            return "—"
        account = getattr(obj.listing.publisher, "creator_account", None)
        return _payout_text(account)

    @admin.display(description="Changes since the previous version")
    def changes(self, obj: ListingVersion) -> str:
        diff = definition_diff(obj)
        if not diff:
            return "First version: nothing to compare."
        return format_html('<pre class="definition-diff">{}</pre>', diff)

    @admin.display(description="Definition")
    def definition_json(self, obj: ListingVersion) -> str:
        return format_html("<pre>{}</pre>", "\n".join(_pretty(obj.definition)))

    def save_model(self, request: HttpRequest, obj: ListingVersion, form: Any, change: Any) -> None:
        decision = form.cleaned_data.get("decision")
        reason = form.cleaned_data.get("reason") or ""
        try:
            if decision == "approve":
                services.version_approve(user=request.user, version=obj)
            elif decision == "reject":
                services.version_reject(user=request.user, version=obj, reason=reason)
            elif decision == "request_changes":
                services.version_request_changes(user=request.user, version=obj, reason=reason)
        except ApplicationError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: Any) -> None:
        pass  # nothing related is edited here

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return super().log_change(request, obj, f"Moderated: {obj.get_status_display()}")

    @admin.action(description="Approve the selected pending versions")
    def approve(self, request: HttpRequest, queryset: QuerySet[ListingVersion]) -> None:
        done = 0
        for version in queryset.filter(status=ListingVersion.Status.PENDING):
            try:
                services.version_approve(user=request.user, version=version)
                done += 1
            except ApplicationError as exc:
                self.message_user(request, f"{version}: {exc.message}", level=messages.ERROR)
        self.message_user(request, f"Approved {done} version(s).")


@admin.register(Flag)
class FlagAdmin(admin.ModelAdmin):
    list_display = ["listing", "reason", "reporter", "created_at", "resolved_at"]
    list_filter = ["reason", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["listing__title", "details"]
    readonly_fields = [
        "listing",
        "reporter",
        "reason",
        "details",
        "created_at",
        "resolved_at",
        "resolved_by",
        "resolution",
    ]
    actions = ["resolve"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Resolve the selected flags")
    def resolve(self, request: HttpRequest, queryset: QuerySet[Flag]) -> None:
        for flag in queryset.filter(resolved_at__isnull=True):
            services.flag_resolve(user=request.user, flag=flag, resolution="Resolved by staff")
        self.message_user(request, "Resolved.")


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = ["listing", "workspace", "rating", "created_at", "replied_at"]
    list_filter = ["rating"]
    search_fields = ["listing__title", "text"]


@admin.register(Install)
class InstallAdmin(ReadOnlyAdmin):
    list_display = ["listing", "version", "workspace", "runs_completed", "installed_at"]
    list_filter = [("uninstalled_at", admin.EmptyFieldListFilter)]
    search_fields = ["listing__title", "workspace__slug"]


class FeeRuleForm(forms.ModelForm):
    class Meta:
        model = FeeRule
        fields = ["category", "percent"]
        help_texts = {
            "category": "Empty: the default fee, for every category without its own rule.",
            "percent": "0 to 100, in percent of each charge (two decimals, e.g. 12.50).",
        }

    def clean_category(self) -> Category | None:
        category: Category | None = self.cleaned_data.get("category")
        others = FeeRule.objects.exclude(pk=self.instance.pk)
        if category is None and others.filter(category__isnull=True).exists():
            raise forms.ValidationError(
                "There is already a default fee rule: change that one, or pick a category."
            )
        return category


@admin.register(FeeRule)
class FeeRuleAdmin(admin.ModelAdmin):
    """The platform fee: the rule without a category is the default; a category's overrides
    it. Saved and deleted through `services.fee_rule_save` / `fee_rule_delete` (audited)."""

    form = FeeRuleForm
    list_display = ["__str__", "category", "percent", "updated_at"]
    list_select_related = ["category"]

    def save_model(self, request: HttpRequest, obj: FeeRule, form: Any, change: Any) -> None:
        services.fee_rule_save(user=request.user, rule=obj)

    def delete_model(self, request: HttpRequest, obj: FeeRule) -> None:
        services.fee_rule_delete(user=request.user, rule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[FeeRule]) -> None:
        for rule in queryset:
            services.fee_rule_delete(user=request.user, rule=rule)


def _dashboard_url(account: CreatorAccount) -> str:
    test = "" if stripe_mode() == "live" else "test/"
    return f"https://dashboard.stripe.com/{test}connect/accounts/{account.stripe_account_id}"


@admin.register(CreatorAccount)
class CreatorAccountAdmin(ReadOnlyAdmin):
    """Creators' Stripe Connect accounts, as last read from Stripe (`account.updated`)."""

    list_display = [
        "publisher",
        "stripe_account",
        "status",
        "transfers_active",
        "payouts_enabled",
        "synced_at",
    ]
    list_filter = ["details_submitted", "transfers_active", "payouts_enabled", "charges_enabled"]
    list_select_related = ["publisher"]
    search_fields = ["publisher__display_name", "publisher__slug", "stripe_account_id"]
    fields = readonly_fields = (
        "publisher",
        "stripe_account",
        "status",
        "requirements",
        "country",
        "default_currency",
        "details_submitted",
        "transfers_active",
        "payouts_enabled",
        "charges_enabled",
        "disabled_reason",
        "synced_at",
        "created_at",
    )

    @admin.display(description="Stripe account")
    def stripe_account(self, obj: CreatorAccount) -> str:
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">{}</a>',
            _dashboard_url(obj),
            obj.stripe_account_id,
        )

    @admin.display(description="Status")
    def status(self, obj: CreatorAccount) -> str:
        return _payout_text(obj)

    @admin.display(description="Requirements due")
    def requirements(self, obj: CreatorAccount) -> str:
        words = requirement_words(list(obj.requirements_due))
        if not words:
            return "None"
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((w,) for w in words))
        )
