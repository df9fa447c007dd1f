from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"

    def ready(self) -> None:
        from core.hooks import run_finished, run_starting
        from marketplace import stripe_events  # noqa: F401 (its webhook receivers)
        from marketplace.purchases import run_charge_record, run_gate
        from marketplace.telemetry import record_finished_run

        run_finished.subscribe(record_finished_run)
        run_finished.subscribe(run_charge_record)
        run_starting.subscribe(run_gate)
