from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Workspaces"

    def ready(self) -> None:
        from django.core.signals import request_finished
        from django.db import close_old_connections

        from tenants import receivers  # noqa: F401  (audit of sign-in events)
        from tenants.connections import recycle_spread_connections

        # Before Django's own end-of-request handler, which closes (or, with the web server's
        # pool, hands back) the connection whose schemas this one counts.
        request_finished.disconnect(close_old_connections)
        request_finished.connect(recycle_spread_connections, dispatch_uid="recycle_spread_conns")
        request_finished.connect(close_old_connections)
