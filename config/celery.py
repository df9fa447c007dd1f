"""The Celery app. Tasks inherit the schema of whoever queued them (tenant-schemas-celery puts
it in a header and switches to it before the task body runs)."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import (
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from tenant_schemas_celery.app import CeleryApp

# Unset means production, which refuses to start without its variables: a deployment that
# forgets DJANGO_SETTINGS_MODULE fails closed instead of running with development defaults
# (DEBUG on). manage.py (and so scripts/dev) and scripts/test choose their settings themselves.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

app = CeleryApp("agentmarket")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Beat's housekeeping runs every few seconds; its "received" and "succeeded" lines would be most
# of the worker's log. What it actually recovers is logged as a warning by the sweep itself.
HOUSEKEEPING_TASKS = frozenset({"workflows.recover_stalled", "workflows.fire_schedules"})


class _QuietHousekeeping(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        return not (
            record.levelno <= logging.INFO
            and isinstance(data, dict)
            and data.get("name") in HOUSEKEEPING_TASKS
        )


for _logger in ("celery.app.trace", "celery.worker.strategy"):
    logging.getLogger(_logger).addFilter(_QuietHousekeeping())

# tenant-schemas-celery switches the connection back to `public` after every task, so the next
# task of the same workspace switches again and django-tenants sends `SET search_path` again: a
# round trip per workflow step. Its switch before each task already handles a task of another
# workspace, or of none (public), so the switch back is not needed.
task_postrun.disconnect(dispatch_uid="tenant_schemas_restore_schema")


@worker_init.connect
def _persistent_db_connections(**_: Any) -> None:
    """Workers keep their database connections between tasks (settings: CELERY_DB_REUSE_MAX,
    WORKER_DB_CONN_MAX_AGE). Prefork children inherit this from the main process."""
    from django.conf import settings

    for database in settings.DATABASES.values():
        database["CONN_MAX_AGE"] = settings.WORKER_DB_CONN_MAX_AGE


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(**_: Any) -> None:
    """What Django does around each request: close a connection that errored or got too old,
    or that has served many workspaces (tenants/connections.py)."""
    from django.db import close_old_connections

    from tenants.connections import recycle_spread_connections

    close_old_connections()
    recycle_spread_connections()


@worker_process_shutdown.connect
@worker_shutdown.connect
def _flush_live_events(**_: Any) -> None:
    """Live run events are sent in the background (workflows/events.py); send what is left
    before the process exits (a prefork child exits without running atexit handlers)."""
    from workflows import events

    events.flush()


@before_task_publish.connect
def _carry_request_context(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """The request id and the trace context travel with the message (core/task_context.py)."""
    from core import task_context

    task_context.on_publish(headers)


@task_prerun.connect
def _task_context_start(task_id: str = "", task: Any = None, **_: Any) -> None:
    from core import task_context

    task_context.on_task_start(task_id=task_id, task=task)


@task_postrun.connect
def _task_context_end(
    task_id: str = "", task: Any = None, state: str | None = None, **_: Any
) -> None:
    from core import task_context

    task_context.on_task_end(task_id=task_id, task=task, state=state)


@worker_ready.connect
def _serve_worker_metrics(**_: Any) -> None:
    """A worker host without a web process serves its figures itself (CELERY_METRICS_PORT,
    docs/operations.md "Metrics and traces"), from its main process."""
    from django.conf import settings

    if settings.CELERY_METRICS_PORT:
        from core import metrics_exporter

        metrics_exporter.start(host=settings.CELERY_METRICS_BIND, port=settings.CELERY_METRICS_PORT)
