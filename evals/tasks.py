from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django_tenants.utils import schema_context

from core import recovery
from evals.services import RUN_EVALUATION_TASK, evaluation_execute, evaluations_recover
from tenants.schemas import live_workspaces

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name=RUN_EVALUATION_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    **recovery.DATABASE_RETRY,
)
def run_evaluation(self: Any, evaluation_id: int, chain: str | None = None) -> str | None:
    """Runs in the schema of the workspace that queued it. At least once: each case is
    answered once (a unique result per case), so a redelivery only finishes the rest; one
    pass at a time, one chain of passes (evals/services.py)."""
    recovery.require_task_schema(self)
    return evaluation_execute(evaluation_id, chain)


@shared_task(name="evals.recover_stalled", max_retries=0, ignore_result=True)
def recover_stalled() -> int:
    """Beat task (every minute): in each workspace, send again the evaluations nobody works
    on (a lost message or worker, a re-send that failed). One workspace's failure does not
    stop the rest."""
    sent = 0
    for schema_name in live_workspaces().order_by("pk").values_list("schema_name", flat=True):
        try:
            with schema_context(schema_name):
                sent += len(evaluations_recover())
        except Exception:  # see docstring
            logger.exception("recovering evaluations failed in schema %s", schema_name)
    return sent
