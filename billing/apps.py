from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        from billing import webhooks  # noqa: F401 - connects the dj-stripe event receivers
        from billing.meter import outbox_metrics
        from billing.plans import on_workspace_created
        from billing.quotas import seats_room_require
        from billing.stripe_client import sdk_configure
        from billing.stripe_mirror import mirror_take_over
        from billing.usage import register_billing_meters
        from core.hooks import member_inviting, workspace_created
        from core.metrics import register_scrape_collector

        mirror_take_over()  # dj-stripe's own handlers: off the webhooks' hot path
        workspace_created.subscribe(on_workspace_created)
        member_inviting.subscribe(seats_room_require)
        register_billing_meters()
        sdk_configure()
        register_scrape_collector("billing_outbox", outbox_metrics)
        setting_changed.connect(_stripe_setting_changed)


def _stripe_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "STRIPE_API_BASE":
        from billing.stripe_client import sdk_configure

        sdk_configure()
