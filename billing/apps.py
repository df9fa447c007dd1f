from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        from billing.plans import on_workspace_created
        from core.hooks import workspace_created

        workspace_created.subscribe(on_workspace_created)
