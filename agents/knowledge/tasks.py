from __future__ import annotations

from celery import shared_task

from agents.knowledge.services import INGEST_DOCUMENT_TASK, document_ingest


@shared_task(
    name=INGEST_DOCUMENT_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=0,
)
def ingest_document(document_id: int) -> str | None:
    """Runs in the schema of the workspace that queued it (tenant-schemas-celery). Safe to
    deliver twice: the ingestion rebuilds the document's chunks from scratch."""
    return document_ingest(document_id=document_id)
