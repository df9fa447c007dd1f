from django.apps import apps
from django.contrib import admin

from billing.models import ModelPrice


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


def _hide_djstripe_admin() -> None:
    """dj-stripe registers ~45 model admins; nothing here uses those models yet (billing keeps
    its own tables and calls Stripe directly), so they only crowd the back-office index.
    Re-register the ones billing starts to use, when it does. (djstripe's admin module is
    imported before this one: it comes first in INSTALLED_APPS.)"""
    for model in apps.get_app_config("djstripe").get_models():
        if admin.site.is_registered(model):
            admin.site.unregister(model)


_hide_djstripe_admin()
