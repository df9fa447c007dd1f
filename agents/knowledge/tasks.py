from __future__ import annotations

from celery import shared_task


@shared_task(
    name="agents.knowledge.ingest_document",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=0,
)
def ingest_document(document_id: int) -> str | None:
    """Runs in the schema of the workspace that queued it (tenant-schemas-celery). Safe to
    deliver twice: the ingestion rebuilds the document's chunks from scratch."""
    from agents.knowledge.services import document_ingest  # services queue this task

    return document_ingest(document_id=document_id)
