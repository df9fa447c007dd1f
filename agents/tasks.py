from __future__ import annotations

from typing import Any

from celery import shared_task

from agents.chat import tasks as _chat_tasks  # noqa: F401 — registers its tasks
from agents.knowledge import tasks as _knowledge_tasks  # noqa: F401 — registers its tasks
from agents.runs.executor import EXECUTE_RUN_TASK, execute_run
from agents.webhooks import DELIVER_WEBHOOK_TASK, webhook_attempt
from core import recovery


@shared_task(
    bind=True,
    name=EXECUTE_RUN_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    **recovery.DATABASE_RETRY,
)
def execute_agent_run(self: Any, run_id: int) -> str | None:
    """Runs in the schema of the workspace that queued it (tenant-schemas-celery). At least
    once: a duplicate does nothing, a run whose worker was lost starts again
    (agents/runs/executor.py); losing the database retries it (core.recovery.DATABASE_RETRY)."""
    recovery.require_task_schema(self)
    return execute_run(run_id)


@shared_task(bind=True, name=DELIVER_WEBHOOK_TASK, acks_late=True, max_retries=None)
def deliver_webhook(self: Any, delivery_id: int) -> None:
    wait = webhook_attempt(delivery_id)
    if wait is not None:
        raise self.retry(countdown=wait)
