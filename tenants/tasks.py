from __future__ import annotations

from typing import Any

from celery import shared_task

from tenants.inventory import workspace_inventory


@shared_task(name="tenants.inventory", acks_late=True, max_retries=0)
def inventory() -> dict[str, Any]:
    """Row counts of every tenant-app table, as seen from the schema the task ran in.

    Operators use it (`manage.py worker_check`) to prove a worker is up and runs each task in
    the workspace that queued it.
    """
    return workspace_inventory()
