"""The demo workspace's knowledge base: a small help centre of a fictional SaaS (Loopdesk).

    with schema_context(workspace.schema_name):
        base = seed_demo_knowledge()

Idempotent: the base is matched by name and each document by its SHA-256, and only documents
that are not ready yet are ingested (synchronously, no worker needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from agents.knowledge import services
from agents.models import KnowledgeBase, KnowledgeDocument

DEMO_DOCS = Path(__file__).resolve().parent / "demo_docs"
DEMO_BASE_NAME = "Help center"
DEMO_BASE_DESCRIPTION = "Loopdesk's help articles: refunds, billing, passwords, shipping, plans."


def seed_demo_knowledge() -> KnowledgeBase:
    """Call inside a workspace schema."""
    base, _ = KnowledgeBase.objects.get_or_create(
        name=DEMO_BASE_NAME, defaults={"description": DEMO_BASE_DESCRIPTION}
    )
    for path in sorted(DEMO_DOCS.glob("*.md")):
        data = path.read_bytes()
        document = (
            base.documents.filter(sha256=hashlib.sha256(data).hexdigest()).defer("content").first()
        )
        if document is None:
            document = services.document_create(knowledge_base=base, filename=path.name, data=data)
        if document.status != KnowledgeDocument.Status.READY:
            services.document_ingest(document_id=document.pk)
    base.refresh_from_db()
    return base
