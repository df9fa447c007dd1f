from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self) -> None:
        from agents.gateway import config_cache
        from agents.gateway.breaker import open_breaker_metrics
        from agents.gateway.spend import ledger_spend_since
        from agents.knowledge.selectors import stored_bytes
        from billing import usage
        from billing.meter import ledger_spend_register
        from core.metrics import register_scrape_collector

        config_cache.connect_signals()
        register_scrape_collector("circuit_breakers", open_breaker_metrics)
        ledger_spend_register(ledger_spend_since)  # billing_reconcile reads our ledger
        # The plan's allowances this app counts (billing sits below agents: docs/billing.md).
        usage.register_meter(
            usage.AI_SPEND,
            label="AI spend",
            unit=usage.Unit.USD,
            count_fn=lambda _workspace_id, period_start: ledger_spend_since(period_start),
        )
        usage.register_meter(
            usage.KNOWLEDGE_STORAGE,
            label="Knowledge storage",
            unit=usage.Unit.BYTES,
            count_fn=lambda _workspace_id, _period_start: stored_bytes(),
        )
