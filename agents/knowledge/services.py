"""Writes for knowledge bases: create and delete bases, upload (checked), ingest (parse, chunk,
embed), retry, delete documents, and re-embed.

Ingestion runs on a Celery worker (`agents.knowledge.tasks.ingest_document`) and is safe to
run twice: it rebuilds the document's chunks from scratch. Every change to what a base can
answer (a document finished, failed or was deleted; the base was deleted) drops the cached
answers of the agent versions that read it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import PurePath
from typing import TypeVar

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from agents.cache import responses as cache
from agents.embeddings import Embedder, EmbeddingError
from agents.knowledge import parsers
from agents.knowledge.chunking import Chunk, chunk_blocks
from agents.knowledge.selectors import embedder_for_base
from agents.models import Agent, KnowledgeBase, KnowledgeChunk, KnowledgeDocument
from billing import quotas
from core.exceptions import Conflict, NotFound, ValidationFailed
from core.queue import enqueue
from tenants import audit
from tenants.permissions import Access, Perm
from tenants.schemas import current_schema

logger = logging.getLogger(__name__)

# The task that ingests a document (agents/knowledge/tasks.py declares it under this name).
INGEST_DOCUMENT_TASK = "agents.knowledge.ingest_document"
EMBED_BATCH_SIZE = 32
_NUMBERED_LOCATION = re.compile(r"^(pages?|rows?|lines?) \d")
_RESET_FIELDS = ["status", "error", "chunks_total", "chunks_done", "updated_at"]
T = TypeVar("T")


def _file_error(message: str) -> ValidationFailed:
    return ValidationFailed(message, fields={"file": [message]})


def _size(size: int) -> str:
    return str(filesizeformat(size)).replace("\xa0", " ")


def _too_big(filename: str, size: int) -> ValidationFailed:
    limit = _size(settings.KNOWLEDGE_MAX_UPLOAD_BYTES)
    return _file_error(f"“{filename}” is {_size(size)}; files may be at most {limit}.")


def _batches(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- knowledge bases ------------------------------------------------------------------------


@transaction.atomic
def knowledge_base_create(*, access: Access, name: str, description: str = "") -> KnowledgeBase:
    access.require(Perm.BUILD)
    name = " ".join((name or "").split())
    description = (description or "").strip()
    errors: dict[str, list[str]] = {}
    if not name or len(name) > 80:
        errors["name"] = ["Enter a name of 1–80 characters."]
    elif KnowledgeBase.objects.filter(name__iexact=name).exists():
        errors["name"] = [f"A knowledge base named “{name}” already exists."]
    if len(description) > 300:
        errors["description"] = ["At most 300 characters."]
    if errors:
        raise ValidationFailed("The knowledge base is invalid: " + ", ".join(errors), fields=errors)
    base = KnowledgeBase.objects.create(
        name=name, description=description, created_by_id=access.actor_id
    )
    audit.record_for(access, action=audit.Action.KNOWLEDGE_BASE_CREATED, target=base)
    return base


@transaction.atomic
def knowledge_base_delete(*, access: Access, knowledge_base_id: int) -> str:
    """Delete a base with its documents and chunks. Refused while an active agent's current
    version reads it (the agent would silently lose its knowledge)."""
    access.require(Perm.BUILD)
    base = KnowledgeBase.objects.select_for_update().filter(pk=knowledge_base_id).first()
    if base is None:
        raise NotFound("No knowledge base with that id in this workspace.")
    readers = list(
        Agent.objects.filter(
            archived_at__isnull=True,
            current_version__knowledge_base_ids__contains=[base.pk],
        ).values_list("name", flat=True)
    )
    if readers:
        raise Conflict(
            f"“{base.name}” is read by {', '.join(sorted(readers))}. Remove it from "
            f"{'that agent' if len(readers) == 1 else 'those agents'} first."
        )
    cache.knowledge_base_changed(base.pk)
    name = base.name
    audit.record_for(access, action=audit.Action.KNOWLEDGE_BASE_DELETED, target=base)
    base.delete()
    return name


# -- documents ------------------------------------------------------------------------------


def _clean_filename(filename: str) -> str:
    name = PurePath((filename or "").replace("\\", "/")).name.strip()
    name = "".join(ch for ch in name if ch.isprintable())
    if len(name) > 255:
        stem, suffix = PurePath(name).stem, PurePath(name).suffix
        name = stem[: 255 - len(suffix)] + suffix
    return name or "upload"


def document_create(
    *,
    knowledge_base: KnowledgeBase,
    filename: str,
    data: bytes,
    created_by_id: int | None = None,
) -> KnowledgeDocument:
    """Check a file and store it as a queued document (the caller starts the ingestion).

    Every refusal is a ValidationFailed on the `file` field that names the file and the
    problem; nothing is stored then."""
    filename = _clean_filename(filename)
    limit = settings.KNOWLEDGE_MAX_UPLOAD_BYTES
    if len(data) > limit:
        raise _too_big(filename, len(data))
    try:
        content_type = parsers.check_upload(filename, data)
    except parsers.UnreadableFile as exc:
        raise _file_error(f"“{filename}” {exc}") from None
    sha256 = hashlib.sha256(data).hexdigest()

    def duplicate() -> ValidationFailed:
        existing = knowledge_base.documents.filter(sha256=sha256).values_list("filename", flat=True)
        first = existing.first() or filename
        return _file_error(
            f"“{filename}” is already in this knowledge base (uploaded as “{first}”)."
        )

    if knowledge_base.documents.filter(sha256=sha256).exists():
        raise duplicate()
    try:
        with transaction.atomic():
            return KnowledgeDocument.objects.create(
                knowledge_base=knowledge_base,
                filename=filename,
                content_type=content_type,
                size_bytes=len(data),
                sha256=sha256,
                content=data,
                created_by_id=created_by_id,
            )
    except IntegrityError:  # the same file uploaded twice at once
        raise duplicate() from None


def document_upload(
    *, access: Access, knowledge_base_id: int, file: UploadedFile[bytes]
) -> KnowledgeDocument:
    """Store one uploaded file and queue its ingestion on the worker."""
    access.require(Perm.BUILD)
    filename = _clean_filename(file.name or "")
    limit = settings.KNOWLEDGE_MAX_UPLOAD_BYTES
    if file.size is not None and file.size > limit:  # refuse before reading it
        raise _too_big(filename, file.size)
    data = file.read(limit + 1)
    with transaction.atomic():
        base = KnowledgeBase.objects.filter(pk=knowledge_base_id).first()
        if base is None:
            raise NotFound("No knowledge base with that id in this workspace.")
        quotas.storage_room_require(
            workspace_id=access.workspace.pk,
            adding_bytes=len(data),
            filename=filename,
        )
        document = document_create(
            knowledge_base=base, filename=filename, data=data, created_by_id=access.actor_id
        )
        audit.record_for(
            access,
            action=audit.Action.DOCUMENT_ADDED,
            target=document,
            target_label=f"{document.filename} in {base.name}",
        )
        transaction.on_commit(partial(enqueue, INGEST_DOCUMENT_TASK, document.pk))
    return document


def _document(knowledge_base_id: int, document_id: int) -> KnowledgeDocument:
    document = (
        KnowledgeDocument.objects.select_for_update()
        .defer("content")
        .filter(pk=document_id, knowledge_base_id=knowledge_base_id)
        .first()
    )
    if document is None:
        raise NotFound("No document with that id in this knowledge base.")
    return document


def document_retry(
    *, access: Access, knowledge_base_id: int, document_id: int
) -> KnowledgeDocument:
    """Queue a failed document's ingestion again."""
    access.require(Perm.BUILD)
    with transaction.atomic():
        document = _document(knowledge_base_id, document_id)
        if document.status != KnowledgeDocument.Status.FAILED:
            raise Conflict(f"“{document.filename}” has not failed, so there is nothing to retry.")
        document.status = KnowledgeDocument.Status.QUEUED
        document.error = ""
        document.chunks_total = document.chunks_done = 0
        document.save(update_fields=_RESET_FIELDS)
        transaction.on_commit(partial(enqueue, INGEST_DOCUMENT_TASK, document.pk))
    return document


@transaction.atomic
def document_delete(*, access: Access, knowledge_base_id: int, document_id: int) -> str:
    access.require(Perm.BUILD)
    document = _document(knowledge_base_id, document_id)
    filename = document.filename
    audit.record_for(
        access,
        action=audit.Action.DOCUMENT_DELETED,
        target=document,
        target_label=f"{filename} in {document.knowledge_base.name}",
    )
    document.delete()
    cache.knowledge_base_changed(knowledge_base_id)
    return filename


# -- ingestion ------------------------------------------------------------------------------


def _embedding_input(chunk: KnowledgeChunk | Chunk) -> str:
    """A heading says what a passage is about, so it is embedded with it; a page or row
    number says nothing and is left out."""
    if chunk.location and not _NUMBERED_LOCATION.match(chunk.location):
        return f"{chunk.location}\n{chunk.text}"
    return chunk.text


def _fail(document_id: int, knowledge_base_id: int, error: str) -> str:
    with transaction.atomic():
        KnowledgeChunk.objects.filter(document_id=document_id).delete()
        KnowledgeDocument.objects.filter(pk=document_id).update(
            status=KnowledgeDocument.Status.FAILED,
            error=error[:2000],
            chunks_total=0,
            chunks_done=0,
            updated_at=timezone.now(),
        )
        cache.knowledge_base_changed(knowledge_base_id)
    return KnowledgeDocument.Status.FAILED


def _try_lock(document_id: int) -> bool:
    """A session advisory lock per document, so a redelivered task does not race the one
    still running (the server frees it if the worker dies)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s))",
            [f"knowledge-ingest:{current_schema()}:{document_id}"],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def _unlock(document_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_unlock(hashtext(%s))",
            [f"knowledge-ingest:{current_schema()}:{document_id}"],
        )


def document_ingest(*, document_id: int) -> str | None:
    """Parse, chunk and embed a document; returns its final status (None if it is gone or
    another worker is ingesting it right now). Rebuilds the chunks from scratch, so a
    redelivered task yields the same chunks, never duplicates."""
    if not _try_lock(document_id):
        return None
    try:
        return _ingest(document_id)
    finally:
        _unlock(document_id)


def _ingest(document_id: int) -> str | None:
    with transaction.atomic():
        document = (
            KnowledgeDocument.objects.select_for_update()
            .select_related("knowledge_base")
            .filter(pk=document_id)
            .first()
        )
        if document is None:
            return None
        base = document.knowledge_base
        KnowledgeChunk.objects.filter(document=document).delete()
        document.status = KnowledgeDocument.Status.PROCESSING
        document.error = ""
        document.chunks_total = document.chunks_done = 0
        document.save(update_fields=_RESET_FIELDS)
    done = total = 0
    try:
        chunks = chunk_blocks(parsers.parse(document.content_type, bytes(document.content)))
        if not chunks:
            raise parsers.UnreadableFile("has no text to extract.")
        embedder = embedder_for_base(base)
        with transaction.atomic():
            rows = KnowledgeChunk.objects.bulk_create(
                KnowledgeChunk(
                    document=document,
                    knowledge_base=base,
                    position=position,
                    text=chunk.text,
                    location=chunk.location,
                )
                for position, chunk in enumerate(chunks)
            )
            total = len(rows)
            KnowledgeDocument.objects.filter(pk=document.pk).update(
                chunks_total=total, updated_at=timezone.now()
            )
        for batch in _batches(rows, EMBED_BATCH_SIZE):
            _embed_batch(batch, embedder, document.pk)
            done += len(batch)
    except parsers.UnreadableFile as exc:
        return _fail(document.pk, base.pk, f"“{document.filename}” {exc}")
    except EmbeddingError as exc:
        progress = f" after {done} of {total} passages" if total else ""
        return _fail(document.pk, base.pk, f"Embedding failed{progress}: {exc}")
    except Exception as exc:
        logger.exception("knowledge ingestion of document %s failed", document.pk)
        return _fail(
            document.pk, base.pk, f"Ingestion failed unexpectedly ({type(exc).__name__}). Retry it."
        )
    with transaction.atomic():
        KnowledgeDocument.objects.filter(pk=document.pk).update(
            status=KnowledgeDocument.Status.READY, updated_at=timezone.now()
        )
        KnowledgeBase.objects.filter(pk=base.pk, embedder="").update(embedder=embedder.name)
        cache.knowledge_base_changed(base.pk)
    return KnowledgeDocument.Status.READY


def _embed_batch(batch: list[KnowledgeChunk], embedder: Embedder, document_id: int) -> None:
    vectors = embedder.embed([_embedding_input(chunk) for chunk in batch])
    for chunk, vector in zip(batch, vectors, strict=True):
        chunk.embedding = vector
    with transaction.atomic():
        KnowledgeChunk.objects.bulk_update(batch, ["embedding"])
        KnowledgeDocument.objects.filter(pk=document_id).update(
            chunks_done=F("chunks_done") + len(batch), updated_at=timezone.now()
        )


# -- re-embedding ---------------------------------------------------------------------------


def knowledge_base_reembed(
    *,
    knowledge_base: KnowledgeBase,
    embedder: Embedder,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Embed every chunk of a base again with `embedder` and record it on the base; returns
    how many chunks were embedded. `on_progress(n)` is called after each batch of n."""
    chunk_ids = list(
        KnowledgeChunk.objects.filter(knowledge_base=knowledge_base)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for ids in _batches(chunk_ids, EMBED_BATCH_SIZE):
        batch = list(KnowledgeChunk.objects.filter(pk__in=ids).only("text", "location"))
        vectors = embedder.embed([_embedding_input(chunk) for chunk in batch])
        for chunk, vector in zip(batch, vectors, strict=True):
            chunk.embedding = vector
        KnowledgeChunk.objects.bulk_update(batch, ["embedding"])
        if on_progress is not None:
            on_progress(len(batch))
    KnowledgeBase.objects.filter(pk=knowledge_base.pk).update(
        embedder=embedder.name, updated_at=timezone.now()
    )
    knowledge_base.embedder = embedder.name
    cache.knowledge_base_changed(knowledge_base.pk)
    return len(chunk_ids)
