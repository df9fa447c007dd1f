from __future__ import annotations

from typing import Any

from celery import shared_task

from core import recovery
from evals.services import RUN_EVALUATION_TASK, evaluation_execute


@shared_task(
    bind=True,
    name=RUN_EVALUATION_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    **recovery.DATABASE_RETRY,
)
def run_evaluation(self: Any, evaluation_id: int) -> str | None:
    """Runs in the schema of the workspace that queued it. At least once: each case is
    answered once (a unique result per case), so a redelivery only finishes the rest."""
    recovery.require_task_schema(self)
    return evaluation_execute(evaluation_id)
