from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Platform core"

    def ready(self) -> None:
        from core import hooks, metrics, tracing

        hooks.run_finished.subscribe(metrics.count_finished_run)
        tracing.configure()
