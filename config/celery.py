"""The Celery app. Tasks inherit the schema of whoever queued them (tenant-schemas-celery puts
it in a header and switches to it before the task body runs)."""

from __future__ import annotations

import os

from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = CeleryApp("agentmarket")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
