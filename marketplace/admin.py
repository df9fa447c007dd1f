"""The marketplace back-office: the moderation queue (a version's change page shows the
listing, a diff against the previous version and the decision form), listings with
unlist/relist, flags with resolve, and read-only reviews and installs. Every decision goes
through `marketplace.services`."""

from __future__ import annotations

import difflib
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.utils.html import format_html

from core.exceptions import ApplicationError
from marketplace import services
from marketplace.models import (
    Category,
    Flag,
    Install,
    Listing,
    ListingVersion,
    Publisher,
    Review,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
    list_display = ["__str__", "status", "submitted_by", "created_at", "moderated_by"]
    list_filter = ["status", "listing__kind"]
    list_select_related = ["listing", "submitted_by", "moderated_by"]
    search_fields = ["listing__title", "listing__slug"]
    ordering = ["status", "created_at"]
    readonly_fields = [
        "listing",
        "listing_summary",
        "number",
        "status",
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
