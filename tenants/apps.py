from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Workspaces"

    def ready(self) -> None:
        from django.core.signals import request_finished

        from tenants import receivers  # noqa: F401  (audit of sign-in events)
        from tenants.connections import recycle_spread_connections

        request_finished.connect(recycle_spread_connections, dispatch_uid="recycle_spread_conns")
