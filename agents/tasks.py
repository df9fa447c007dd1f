from __future__ import annotations

from celery import shared_task

from agents.runs import execute_run


@shared_task(name="agents.execute_run", acks_late=True, reject_on_worker_lost=True, max_retries=0)
def execute_agent_run(run_id: int) -> str | None:
    """Runs in the schema of the workspace that queued it (tenant-schemas-celery)."""
    return execute_run(run_id)
