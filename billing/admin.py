from django.apps import apps
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from billing.meter import meter_retry
from billing.models import MeterOutbox, ModelPrice, Plan, WorkspacePlan


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

    def has_delete_permission(self, request: HttpRequest, obj: Plan | None = None) -> bool:
        # A plan with workspaces on it is protected by the database too; say it here first.
        return obj is None or not obj.workspaces.exists()


@admin.register(WorkspacePlan)
class WorkspacePlanAdmin(admin.ModelAdmin):
    list_display = (
        "workspace",
        "plan",
        "status",
        "trial_ends_at",
        "current_period_end",
        "cancel_at_period_end",
    )
    list_filter = ("status", "plan")
    search_fields = ("workspace__name", "workspace__slug", "stripe_customer_id")
    list_select_related = ("workspace", "plan")
    readonly_fields = (
        "workspace",
        "stripe_customer_id",
        "stripe_subscription_id",
        "created_at",
        "updated_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # every workspace gets its row when it is created

    def has_delete_permission(self, request: HttpRequest, obj: WorkspacePlan | None = None) -> bool:
        return False


@admin.register(MeterOutbox)
class MeterOutboxAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: MeterOutbox | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: MeterOutbox | None = None) -> bool:
        return False

    @admin.action(description="Retry the selected failed rows now", permissions=["view"])
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
