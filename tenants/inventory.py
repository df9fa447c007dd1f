from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings

from tenants.schemas import current_schema


def workspace_inventory() -> dict[str, Any]:
    """The current schema and the row count of each tenant-app model in it."""
    tenant_labels = {app.rsplit(".", 1)[-1] for app in settings.TENANT_APPS}
    counts: dict[str, int] = {}
    for model in apps.get_models():
        if model._meta.app_label in tenant_labels and model._meta.managed:
            counts[model._meta.label] = model._default_manager.count()
    return {"schema": current_schema(), "rows": counts}
