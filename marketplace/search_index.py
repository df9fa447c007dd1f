"""Keeps a listing's search columns (`search_vector`, `embedding`) in step with its text.

Callers are the marketplace services (after a listing's text changes) and the catalogue
importer / a backfill (`index_all`). Nothing here runs from a signal.

The tsvector weights are the ranking contract of `selectors.listing_search`: title A, tags and
summary B, description C, all with the 'english' configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.contrib.postgres.search import SearchVector
from django.db import connection
from django.db.models import F, Func, QuerySet, TextField, Value
from django.db.models.expressions import CombinedExpression

from agents.embeddings import embed_one, get_embedder
from marketplace.models import Listing

SEARCH_CONFIG = "english"
# The hashing embedder reads every word; a model embedder truncates to its own limit anyway.
# Long descriptions add little beyond their first paragraphs and cost time.
EMBED_MAX_CHARS = 2000

_SEARCH_VECTOR_SQL = f"""
    setweight(to_tsvector('{SEARCH_CONFIG}', coalesce(title, '')), 'A')
    || setweight(to_tsvector('{SEARCH_CONFIG}',
                             array_to_string(tags, ' ') || ' ' || coalesce(summary, '')), 'B')
    || setweight(to_tsvector('{SEARCH_CONFIG}', coalesce(description, '')), 'C')
"""


def search_vector_expression() -> CombinedExpression:
    """The ORM form of `_SEARCH_VECTOR_SQL` (same weights and configuration)."""
    tags = Func(F("tags"), Value(" "), function="array_to_string", output_field=TextField())
    return (
        SearchVector("title", weight="A", config=SEARCH_CONFIG)
        + SearchVector(tags, "summary", weight="B", config=SEARCH_CONFIG)
        + SearchVector("description", weight="C", config=SEARCH_CONFIG)
    )


def embedding_text(*, title: str, summary: str, tags: Iterable[str], description: str) -> str:
    text = "\n".join([title, summary, " ".join(tags), description])
    return text[:EMBED_MAX_CHARS]


def _listing_text(listing: Listing) -> str:
    return embedding_text(
        title=listing.title,
        summary=listing.summary,
        tags=listing.tags or [],
        description=listing.description,
    )


def index_listing(listing: Listing) -> None:
    """Recompute both search columns of one listing from its saved text, in one UPDATE.

    The tsvector is computed by PostgreSQL from the row, so save the text first."""
    vector = embed_one(_listing_text(listing))
    Listing.objects.filter(pk=listing.pk).update(
        search_vector=search_vector_expression(), embedding=vector
    )


def index_all(
    queryset: QuerySet[Listing] | None = None,
    batch: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Re-index many listings: embeddings in batches of `batch` (one embedder call and one
    UPDATE per batch), then one set-based UPDATE for the tsvectors. Returns the number of
    listings indexed; `progress(done, total)` is called after each batch."""
    queryset = (queryset if queryset is not None else Listing.objects.all()).order_by("pk")
    rows = queryset.values_list("pk", "title", "summary", "tags", "description")
    total = queryset.count()
    embedder = get_embedder()
    done = 0
    table = Listing._meta.db_table
    pending: list[tuple[int, str, str, list[str], str]] = []

    def flush() -> None:
        nonlocal done
        ids = [row[0] for row in pending]
        texts = [
            embedding_text(title=t, summary=s, tags=tags or [], description=d)
            for _, t, s, tags, d in pending
        ]
        vectors = embedder.embed(texts)
        literals = ["[" + ",".join(f"{v:.7g}" for v in vector) + "]" for vector in vectors]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} AS l SET embedding = v.e::vector"  # noqa: S608 (a model's table)
                " FROM unnest(%s::bigint[], %s::text[]) AS v(id, e) WHERE l.id = v.id",
                [ids, literals],
            )
            # The tsvector of the same rows, computed by PostgreSQL.
            cursor.execute(
                f"UPDATE {table} SET search_vector = {_SEARCH_VECTOR_SQL}"  # noqa: S608
                " WHERE id = ANY(%s::bigint[])",
                [ids],
            )
        done += len(pending)
        pending.clear()
        if progress is not None:
            progress(done, total)

    for row in rows.iterator(chunk_size=batch):
        pending.append(row)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return done
