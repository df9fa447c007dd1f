from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"

    def ready(self) -> None:
        from core.hooks import copy_exporting, run_finished, run_starting

        # Importing them registers their Stripe webhook receivers and the money admin.
        from marketplace import connect, money_admin, payout_events, stripe_events  # noqa: F401
        from marketplace.copy_export import export_gate
        from marketplace.page_cache import connect_invalidation
        from marketplace.purchases import run_charge_record, run_gate
        from marketplace.telemetry import record_finished_run

        run_finished.subscribe(record_finished_run)
        run_finished.subscribe(run_charge_record)
        run_starting.subscribe(run_gate)
        copy_exporting.subscribe(export_gate)
        connect_invalidation()  # the cached public pages (marketplace/page_cache.py)
