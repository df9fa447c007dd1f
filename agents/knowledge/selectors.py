"""Reads for knowledge bases: listings, documents, and the vector search agents use."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, QuerySet, Sum
from pgvector.django import CosineDistance

from agents.embeddings import EMBEDDERS, Embedder, EmbeddingError, get_embedder
from agents.models import KnowledgeBase, KnowledgeChunk, KnowledgeDocument
from core.exceptions import NotFound
from tenants.permissions import Access, Perm

logger = logging.getLogger(__name__)

TOP_K_MAX = 10
# Without iterative index scans (pgvector < 0.8) a filtered HNSW search sees only ef_search
# candidates before the filter; widen it instead so filtered searches still fill up.
FALLBACK_EF_SEARCH = 400


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    document_id: int
    knowledge_base_id: int
    filename: str
    location: str
    text: str
    distance: float

    @property
    def citation(self) -> str:
        return f"{self.filename}, {self.location}" if self.location else self.filename


def stored_bytes() -> int:
    """The workspace's knowledge storage: the size of every document it keeps (the plan's
    allowance, billing.usage meter `knowledge_storage`)."""
    return int(KnowledgeDocument.objects.aggregate(total=Sum("size_bytes"))["total"] or 0)


def knowledge_bases_list(*, access: Access) -> QuerySet[KnowledgeBase]:
    access.require(Perm.WORKSPACE_VIEW)
    return KnowledgeBase.objects.annotate(
        document_count=Count("documents"), chunk_count=Sum("documents__chunks_total")
    )


def knowledge_base_get(*, access: Access, knowledge_base_id: int) -> KnowledgeBase:
    base = knowledge_bases_list(access=access).filter(pk=knowledge_base_id).first()
    if base is None:
        raise NotFound("No knowledge base with that id in this workspace.")
    return base


def documents_list(*, access: Access, knowledge_base_id: int) -> QuerySet[KnowledgeDocument]:
    """The documents of a base, without their (possibly large) file content."""
    access.require(Perm.WORKSPACE_VIEW)
    return KnowledgeDocument.objects.filter(knowledge_base_id=knowledge_base_id).defer("content")


def ingestion_in_progress(documents: Iterable[KnowledgeDocument]) -> bool:
    active = {KnowledgeDocument.Status.QUEUED, KnowledgeDocument.Status.PROCESSING}
    return any(document.status in active for document in documents)


def embedder_kind(name: str) -> str:
    """The EMBEDDER setting value ("hashing") of an embedder's recorded name ("hashing-v1")."""
    for kind, embedder_class in EMBEDDERS.items():
        if name == embedder_class.name or name in embedder_class.legacy_names:
            return kind
    raise EmbeddingError(
        f"The knowledge base was embedded with '{name}', which this installation does not "
        "know. Run `manage.py reembed` to embed it again."
    )


def embedder_for_base(base: KnowledgeBase) -> Embedder:
    """The embedder a base's vectors came from (queries must use the same one); a base with
    no vectors yet uses the configured EMBEDDER."""
    return get_embedder(embedder_kind(base.embedder) if base.embedder else None)


@cache
def _pgvector_version() -> tuple[int, ...]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    return tuple(int(part) for part in str(row[0] if row else "0").split(".") if part.isdigit())


def _nearest(base_ids: list[int], vector: list[float], top_k: int) -> list[tuple[int, float]]:
    """(chunk id, cosine distance) of the nearest chunks of these bases, using the HNSW index.

    The base filter is applied while the index is scanned: with pgvector ≥ 0.8 iterative
    scans keep reading the index until `top_k` rows pass the filter (relaxed order, so the
    rows are sorted again here)."""
    with transaction.atomic(), connection.cursor() as cursor:
        if _pgvector_version() >= (0, 8):
            cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        else:
            cursor.execute(f"SET LOCAL hnsw.ef_search = {FALLBACK_EF_SEARCH:d}")
        rows = list(
            KnowledgeChunk.objects.filter(knowledge_base_id__in=base_ids, embedding__isnull=False)
            .annotate(distance=CosineDistance("embedding", vector))
            .order_by("distance")
            .values_list("id", "distance")[:top_k]
        )
    return sorted(((chunk_id, float(distance)) for chunk_id, distance in rows), key=lambda r: r[1])


def knowledge_search(
    *, knowledge_base_ids: Iterable[int], query: str, top_k: int = 5
) -> list[Passage]:
    """The passages of these bases nearest to the query, best first.

    Each base is queried with the embedder its vectors came from. Raises EmbeddingError when
    that embedder is unavailable."""
    top_k = max(1, min(top_k, TOP_K_MAX))
    groups: dict[str, list[int]] = defaultdict(list)
    for base_id, embedder_name in KnowledgeBase.objects.filter(
        pk__in=list(knowledge_base_ids)
    ).values_list("pk", "embedder"):
        if embedder_name:  # a base with no vectors yet has nothing to find
            groups[embedder_name].append(base_id)
    found: list[tuple[int, float]] = []
    for embedder_name, base_ids in groups.items():
        vector = get_embedder(embedder_kind(embedder_name)).embed([query])[0]
        found += _nearest(base_ids, vector, top_k)
    found = sorted(found, key=lambda r: r[1])[:top_k]
    chunks = {
        chunk.pk: chunk
        for chunk in KnowledgeChunk.objects.filter(pk__in=[c for c, _ in found])
        .select_related("document")
        .only("text", "location", "knowledge_base_id", "document", "document__filename")
    }
    return [
        Passage(
            chunk_id=chunk_id,
            document_id=chunks[chunk_id].document_id,
            knowledge_base_id=chunks[chunk_id].knowledge_base_id,
            filename=chunks[chunk_id].document.filename,
            location=chunks[chunk_id].location,
            text=chunks[chunk_id].text,
            distance=distance,
        )
        for chunk_id, distance in found
        if chunk_id in chunks  # deleted between the two queries
    ]


def configured_embedder_name() -> str:
    """The name of the embedder new knowledge bases get (for pages that compare)."""
    embedder_class = EMBEDDERS.get(settings.EMBEDDER)
    return embedder_class.name if embedder_class else settings.EMBEDDER
