from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"

    def ready(self) -> None:
        from core.hooks import run_finished
        from marketplace import connect  # noqa: F401 (registers its Stripe webhook receiver)
        from marketplace import money_admin, payout_events  # noqa: F401 - registers them
        from marketplace.telemetry import record_finished_run

        run_finished.subscribe(record_finished_run)
