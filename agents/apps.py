from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self) -> None:
        from agents.gateway import budgets, config_cache
        from billing.meter import ledger_spend_register

        config_cache.connect_signals()
        ledger_spend_register(budgets.spend_since)  # billing_reconcile reads our ledger
