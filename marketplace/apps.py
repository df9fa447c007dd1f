from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"

    def ready(self) -> None:
        from core.hooks import run_finished
        from marketplace.telemetry import record_finished_run

        run_finished.subscribe(record_finished_run)
