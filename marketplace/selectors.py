"""Marketplace reads: search, the browse page, a listing's page and a publisher's page.

Every function here shows public listings only (an approved current version, not unlisted),
and loads what a card shows (category, publisher) with the listing, so the number of queries
does not depend on the number of listings.

`listing_search` is the one search used by the pages and the API:

- keyword: `websearch_to_tsquery('english', q)` against `search_vector` (GIN), ranked by
  `ts_rank`;
- semantic: cosine distance to the query's embedding through the HNSW index, with pgvector's
  iterative scan so filters applied during the scan still fill the page;
- combined (the default when `q` is given): reciprocal rank fusion of the top `FUSION_DEPTH`
  of each, with the filters inside both candidate queries.

A semantic candidate counts only within the floor calibrated for the embedder in use
(`marketplace.search_calibration`): the nearest listings to gibberish are not near it. Each
result of a query says why it matched (`SearchResult.matches`): the fields holding a query word,
or "similar in meaning" for a semantic-only hit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db import connection, transaction
from django.db.models import Count, F, Prefetch, Q, QuerySet, Sum
from pgvector.django import CosineDistance

from agents.embeddings import get_embedder
from core.exceptions import NotFound, ValidationFailed
from marketplace.earnings import BUCKETS
from marketplace.models import (
    Category,
    CreatorAccount,
    Install,
    LedgerEntry,
    Listing,
    ListingVersion,
    Publisher,
    Purchase,
    Review,
)
from marketplace.pricing import checkout_active, price_terms
from marketplace.purchases import LIVE
from marketplace.search_calibration import semantic_max_distance
from marketplace.search_index import SEARCH_CONFIG
from tenants.models import Workspace
from tenants.permissions import Access

Sort = Literal["relevance", "rating", "installs", "new"]
Mode = Literal["combined", "keyword", "semantic"]

FUSION_DEPTH = 100  # candidates taken from each of keyword and semantic search
RRF_K = 60  # the usual reciprocal-rank-fusion constant
LIMIT_MAX = 100
# recall@10 0.98 against exact search at 100k listings (bench/marketplace_search.py).
HNSW_EF_SEARCH = 400
HNSW_EF_SEARCH_MAX = 1000  # pgvector refuses more; the iterative scan goes on past it
OFFSET_MAX = 10_000
# How many index tuples an iterative scan may visit before giving up on a selective filter.
HNSW_MAX_SCAN_TUPLES = 20000
HOME_SECTION_SIZE = 8
RECENT_REVIEWS = 10

PUBLIC = Q(current_version__isnull=False, unlisted_at__isnull=True)
# Columns a card never shows and that are large (the embedding is 384 floats).
_CARD_DEFERRED = ("search_vector", "embedding", "description")

_ORDERINGS: dict[str, tuple[Any, ...]] = {
    "rating": (F("rating_avg").desc(nulls_last=True), "-review_count", "id"),
    "installs": ("-install_count", "id"),
    "new": (F("published_at").desc(nulls_last=True), "-id"),
    "relevance": ("-featured", "-install_count", "id"),  # no query: popular first
}


# The fields a query word can be found in, in the order a match reason names them.
MATCH_FIELDS = ("title", "tags", "summary", "description")
# ts_headline's marks around a matched word: control characters no listing text contains.
_MARK_START, _MARK_END = "\x02", "\x03"

Segments = list[tuple[str, bool]]  # (text, is a matched word)


@dataclass(frozen=True)
class Match:
    """Why a listing is in the results of a query."""

    fields: tuple[str, ...]  # of MATCH_FIELDS, those holding a word of the query
    semantic: bool  # found by the semantic side (within the floor)
    title: Segments  # the title, cut where query words are
    summary: Segments

    @property
    def reason(self) -> str:
        if self.fields:
            return "Matched: " + ", ".join(self.fields)
        return "Similar in meaning" if self.semantic else "Matched"


@dataclass(frozen=True)
class Hit:
    listing: Listing
    match: Match | None


@dataclass(frozen=True)
class SearchResult:
    listings: list[Listing]
    has_more: bool
    mode: str  # "browse", "keyword", "semantic" or "combined"
    # Combined and semantic search only look at the best candidates: their total is a bound.
    total_estimate: int | None = None
    matches: dict[int, Match] = field(default_factory=dict)  # by listing id, when `q` is given

    @property
    def hits(self) -> list[Hit]:
        return [Hit(listing, self.matches.get(listing.pk)) for listing in self.listings]


@dataclass(frozen=True)
class Home:
    featured: list[Listing]
    newest: list[Listing]
    top_rated: list[Listing]
    most_installed: list[Listing]
    categories: list[Category] = field(default_factory=list)  # each with `listing_count`


@dataclass(frozen=True)
class PublisherListings:
    publisher: Publisher
    listings: list[Listing]


def public_listings() -> QuerySet[Listing]:
    return Listing.objects.filter(PUBLIC)


def _cards(queryset: QuerySet[Listing]) -> QuerySet[Listing]:
    return queryset.select_related("category", "publisher").defer(*_CARD_DEFERRED)


def _filtered(
    *,
    category: Category | str | None,
    kind: str | None,
    provider: str | None,
    pricing: str | None,
    min_rating: float | Decimal | None,
) -> QuerySet[Listing]:
    queryset = public_listings()
    if category is not None:
        if isinstance(category, Category):
            queryset = queryset.filter(category=category)
        else:
            queryset = queryset.filter(category__slug=category)
    if kind:
        queryset = queryset.filter(kind=kind)
    if provider:
        queryset = queryset.filter(providers__contains=[provider])
    if pricing == "free":
        queryset = queryset.filter(pricing=Listing.Pricing.FREE)
    elif pricing == "paid":
        queryset = queryset.exclude(pricing=Listing.Pricing.FREE)
    elif pricing:
        raise ValidationFailed("Pricing is 'free' or 'paid'.", fields={"pricing": ["invalid"]})
    if min_rating is not None:
        queryset = queryset.filter(rating_avg__gte=min_rating)
    return queryset


def _keyword_ids(queryset: QuerySet[Listing], q: str, count: int) -> list[int]:
    query = SearchQuery(q, search_type="websearch", config=SEARCH_CONFIG)
    return list(
        queryset.filter(search_vector=query)
        .annotate(rank=SearchRank(F("search_vector"), query))
        .order_by("-rank", "id")
        .values_list("id", flat=True)[:count]
    )


def _semantic_ids(
    queryset: QuerySet[Listing], vector: list[float], count: int, max_distance: float
) -> list[int]:
    """The ids of the `count` nearest listings within `max_distance`, nearest first, through
    the HNSW index.

    The filters are applied while the index is scanned; the iterative scan (pgvector ≥ 0.8)
    keeps reading until `count` rows pass them or `HNSW_MAX_SCAN_TUPLES` were visited.
    Relaxed order returns rows slightly out of order, so they are sorted again here."""
    ef_search = min(HNSW_EF_SEARCH_MAX, max(HNSW_EF_SEARCH, count))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
            " set_config('hnsw.ef_search', %s, true),"
            " set_config('hnsw.max_scan_tuples', %s, true)",
            [str(ef_search), str(HNSW_MAX_SCAN_TUPLES)],
        )
        rows = list(
            queryset.filter(embedding__isnull=False)
            .annotate(distance=CosineDistance("embedding", vector))
            .order_by("distance")
            .values_list("id", "distance")[:count]
        )
    rows.sort(key=lambda row: (row[1], row[0]))
    return [listing_id for listing_id, distance in rows if distance <= max_distance]


def _query_vector(q: str) -> tuple[list[float], float] | None:
    """The query's embedding and the floor of the embedder that made it; None when semantic
    search cannot help (no calibrated floor, or a query of stop words only, which embeds to
    zeros and has no cosine distance to anything)."""
    embedder = get_embedder()
    max_distance = semantic_max_distance(embedder.name)
    if max_distance is None:
        return None
    vector = embedder.embed([q])[0]
    return (vector, max_distance) if any(vector) else None


def _semantic(queryset: QuerySet[Listing], q: str, count: int) -> list[int]:
    found = _query_vector(q)
    return _semantic_ids(queryset, found[0], count, found[1]) if found else []


def _any_word_query(q: str) -> str:
    """The query's words joined by OR (websearch syntax), without excluded (`-word`) ones:
    what a field must contain to be named in a match reason or highlighted."""
    kept = " ".join(token for token in q.split() if not token.startswith("-"))
    words = [w for w in re.findall(r"\w+", kept) if w.lower() != "or"]
    return " or ".join(words)


def _segments(marked: str) -> Segments:
    segments: Segments = []
    for i, part in enumerate(marked.split(_MARK_START)):
        if i == 0:
            if part:
                segments.append((part, False))
            continue
        word, _, rest = part.partition(_MARK_END)
        segments.append((word, True))
        if rest:
            segments.append((rest, False))
    return segments


def _matches(ids: list[int], q: str, semantic: set[int]) -> dict[int, Match]:
    """Why each of `ids` matched `q`: one query for the page, whatever its size."""
    words = _any_word_query(q)
    if not ids:
        return {}
    if not words:
        return {i: Match(fields=(), semantic=i in semantic, title=[], summary=[]) for i in ids}
    headline = f"HighlightAll=true, StartSel={_MARK_START}, StopSel={_MARK_END}"
    table = Listing._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT l.id,
                   to_tsvector(%(config)s::regconfig, l.title) @@ q.q,
                   to_tsvector(%(config)s::regconfig, array_to_string(l.tags, ' ')) @@ q.q,
                   to_tsvector(%(config)s::regconfig, l.summary) @@ q.q,
                   to_tsvector(%(config)s::regconfig, l.description) @@ q.q,
                   ts_headline(%(config)s::regconfig, l.title, q.q, %(headline)s),
                   ts_headline(%(config)s::regconfig, l.summary, q.q, %(headline)s)
            FROM {table} AS l,
                 websearch_to_tsquery(%(config)s::regconfig, %(words)s) AS q(q)
            WHERE l.id = ANY(%(ids)s)
            """,  # noqa: S608 (a model's table)
            {"config": SEARCH_CONFIG, "words": words, "ids": ids, "headline": headline},
        )
        rows = cursor.fetchall()
    return {
        row[0]: Match(
            fields=tuple(name for name, hit in zip(MATCH_FIELDS, row[1:5], strict=True) if hit),
            semantic=row[0] in semantic,
            title=_segments(row[5]),
            summary=_segments(row[6]),
        )
        for row in rows
    }


def _fuse(*rankings: list[int]) -> list[int]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for position, listing_id in enumerate(ranking, start=1):
            scores[listing_id] = scores.get(listing_id, 0.0) + 1.0 / (RRF_K + position)
    return sorted(scores, key=lambda listing_id: (-scores[listing_id], listing_id))


def _load_in_order(ids: list[int]) -> list[Listing]:
    by_id = {listing.pk: listing for listing in _cards(Listing.objects.filter(pk__in=ids))}
    return [by_id[listing_id] for listing_id in ids if listing_id in by_id]


def listing_search(
    *,
    q: str = "",
    category: Category | str | None = None,
    kind: str | None = None,
    provider: str | None = None,
    pricing: str | None = None,
    min_rating: float | Decimal | None = None,
    sort: Sort = "relevance",
    mode: Mode = "combined",
    limit: int = 24,
    offset: int = 0,
    explain: bool = False,
) -> SearchResult:
    """Public listings matching `q` and the filters, one page of them.

    With `q`, relevance comes from `mode`; another `sort` reorders the matching candidates.
    Without `q`, all matching listings in `sort` order. `category` is a Category or its slug.
    `explain` adds why each listing of the page matched (`matches`, one more query).
    Raises ValidationFailed for an unknown sort, mode or pricing."""
    if sort not in _ORDERINGS:
        raise ValidationFailed("Unknown sort order.", fields={"sort": ["invalid"]})
    if mode not in ("combined", "keyword", "semantic"):
        raise ValidationFailed("Unknown search mode.", fields={"mode": ["invalid"]})
    limit = max(1, min(limit, LIMIT_MAX))
    offset = max(0, min(offset, OFFSET_MAX))
    queryset = _filtered(
        category=category, kind=kind, provider=provider, pricing=pricing, min_rating=min_rating
    )
    q = q.strip()
    if not q:
        page = list(_cards(queryset).order_by(*_ORDERINGS[sort])[offset : offset + limit + 1])
        return SearchResult(listings=page[:limit], has_more=len(page) > limit, mode="browse")

    wanted = offset + limit + 1
    if mode == "keyword" and sort == "relevance":
        ids = _keyword_ids(queryset, q, wanted)
        return _page(
            ids, offset, limit, mode, q=q if explain else "", semantic=set(), total_estimate=None
        )
    depth = max(FUSION_DEPTH, wanted)
    semantic: list[int] = []
    if mode == "keyword":
        ids = _keyword_ids(queryset, q, depth)
    elif mode == "semantic":
        ids = semantic = _semantic(queryset, q, wanted if sort == "relevance" else depth)
    else:
        keyword = _keyword_ids(queryset, q, depth)
        semantic = _semantic(queryset, q, depth)
        ids = _fuse(keyword, semantic)
    if sort != "relevance":
        ordered = _cards(Listing.objects.filter(pk__in=ids)).order_by(*_ORDERINGS[sort])
        page = list(ordered[offset : offset + limit + 1])
        return SearchResult(
            listings=page[:limit],
            has_more=len(page) > limit,
            mode=mode,
            total_estimate=len(ids),
            matches=_matches([listing.pk for listing in page[:limit]], q, set(semantic))
            if explain
            else {},
        )
    return _page(
        ids,
        offset,
        limit,
        mode,
        q=q if explain else "",
        semantic=set(semantic),
        total_estimate=len(ids),
    )


def _page(
    ids: list[int],
    offset: int,
    limit: int,
    mode: str,
    *,
    q: str,
    semantic: set[int],
    total_estimate: int | None,
) -> SearchResult:
    """One page of `ids`; with `q`, each listing's match reason too."""
    listings = _load_in_order(ids[offset : offset + limit])
    return SearchResult(
        listings=listings,
        has_more=len(ids) > offset + limit,
        mode=mode,
        total_estimate=total_estimate,
        matches=_matches([listing.pk for listing in listings], q, semantic) if q else {},
    )


def browse_home() -> Home:
    """The marketplace front page in five queries: four sections and the category counts."""
    cards = _cards(public_listings())
    return Home(
        featured=list(
            cards.filter(featured=True).order_by(*_ORDERINGS["installs"])[:HOME_SECTION_SIZE]
        ),
        newest=list(cards.order_by(*_ORDERINGS["new"])[:HOME_SECTION_SIZE]),
        top_rated=list(
            cards.filter(rating_avg__isnull=False).order_by(*_ORDERINGS["rating"])[
                :HOME_SECTION_SIZE
            ]
        ),
        most_installed=list(cards.order_by(*_ORDERINGS["installs"])[:HOME_SECTION_SIZE]),
        categories=list(
            Category.objects.annotate(
                listing_count=Count(
                    "listings",
                    filter=Q(
                        listings__current_version__isnull=False,
                        listings__unlisted_at__isnull=True,
                    ),
                )
            )
        ),
    )


def listing_detail(*, slug: str) -> Listing:
    """A public listing with its publisher, category, current version and latest reviews
    (`listing.recent_reviews`, newest first). Raises NotFound otherwise."""
    recent = Review.objects.select_related("author").order_by("-created_at", "-id")
    listing = (
        public_listings()
        .select_related("publisher", "category", "current_version")
        .defer("search_vector", "embedding")
        .prefetch_related(
            Prefetch("reviews", queryset=recent[:RECENT_REVIEWS], to_attr="recent_reviews")
        )
        .filter(slug=slug)
        .first()
    )
    if listing is None:
        raise NotFound("No such listing.")
    return listing


def publisher_listings(*, slug: str) -> PublisherListings:
    """A publisher and their public listings, most installed first. Raises NotFound."""
    publisher = Publisher.objects.filter(slug=slug).first()
    if publisher is None:
        raise NotFound("No such publisher.")
    listings = list(
        _cards(public_listings().filter(publisher=publisher)).order_by(*_ORDERINGS["installs"])
    )
    return PublisherListings(publisher=publisher, listings=listings)


# --- a workspace's side: what it installed and what it publishes (pages and API)


def public_listing(*, slug: str) -> Listing:
    """A public listing with its current version, for acting on it (install, review, flag).
    Raises NotFound for anything not public."""
    listing = (
        public_listings()
        .select_related("current_version")
        .defer("search_vector", "embedding")
        .filter(slug=slug)
        .first()
    )
    if listing is None:
        raise NotFound("No such listing.")
    return listing


def workspace_installs(*, access: Access, definitions: bool = False) -> QuerySet[Install]:
    """The workspace's active installs by listing title, with the listing, its current version
    and the pinned version. Their definitions load only with `definitions=True` (for diffs)."""
    installs = (
        Install.objects.filter(workspace=access.workspace, uninstalled_at__isnull=True)
        .select_related("listing__current_version", "version")
        .defer("listing__search_vector", "listing__embedding", "listing__description")
        .order_by("listing__title", "id")
    )
    if not definitions:
        installs = installs.defer("version__definition", "listing__current_version__definition")
    return installs


def workspace_install(*, access: Access, install_id: int) -> Install:
    """One active install of the workspace. Raises NotFound (another workspace's included)."""
    install = workspace_installs(access=access).filter(pk=install_id).first()
    if install is None:
        raise NotFound("No active install with that id in this workspace.")
    return install


def workspace_listings(*, access: Access) -> QuerySet[Listing]:
    """The workspace's listings as a publisher, public or not, by title, with the category,
    the current version and every version newest first (definitions not loaded)."""
    versions = ListingVersion.objects.order_by("-number").defer("definition")
    return (
        Listing.objects.filter(publisher__workspace=access.workspace)
        .select_related("category", "current_version")
        .defer("search_vector", "embedding", "current_version__definition")
        .prefetch_related(Prefetch("versions", queryset=versions))
        .order_by("title", "id")
    )


def reviews_awaiting_reply(*, access: Access, limit: int = 20) -> list[Review]:
    """The newest reviews of the workspace's listings that it has not replied to."""
    return list(
        Review.objects.filter(listing__publisher__workspace=access.workspace, reply="")
        .select_related("listing")
        .order_by("-created_at")[:limit]
    )


@dataclass(frozen=True)
class BuyOptions:
    """What a signed-in user may do about a paid listing's price."""

    pricing: str  # the current version's Listing.Pricing
    terms: str  # "$19.00 one-time", ...
    own_listing: bool  # one of the user's workspaces publishes it
    buyers: list[Workspace]  # where the user may buy it (not bought yet, not the publisher)
    runnable_in: set[int]  # workspace ids whose purchase lets the listing be installed and run
    bought: list[tuple[Workspace, Purchase]]  # the user's workspaces' live purchases
    # Why it cannot be bought now ("" when it can): the publisher's payouts are not set up
    # (no `buyers` then; purchases already made keep working).
    unavailable: str = ""


NOT_SELLABLE = "Not available to buy right now: the publisher's payouts are not set up."


def listing_buy_options(
    *, listing: Listing, mine: list[Workspace], managers: list[Workspace]
) -> BuyOptions | None:
    """The buy options of `listing` for a user whose workspaces are `mine`, of which they
    manage billing in `managers`; None when it is free or paid listings are not sold (billing
    off). The publisher's own workspace is never a buyer: it would pay itself, and nobody is
    while the publisher's payouts account is not onboarded (`unavailable` says so). Two
    queries."""
    version = listing.current_version
    if not checkout_active() or version is None or version.pricing == Listing.Pricing.FREE:
        return None
    bought = {
        p.buyer_id: p
        for p in Purchase.objects.filter(listing=listing, buyer__in=mine, status__in=LIVE)
    }
    account = CreatorAccount.objects.filter(publisher_id=listing.publisher_id).first()
    sellable = account is not None and account.onboarded
    return BuyOptions(
        pricing=version.pricing,
        terms=price_terms(version),
        own_listing=any(w.pk == listing.publisher.workspace_id for w in mine),
        buyers=[
            w
            for w in managers
            if sellable
            and not (w.pk in bought and bought[w.pk].runnable)
            and w.pk != listing.publisher.workspace_id
        ],
        runnable_in={pk for pk, purchase in bought.items() if purchase.runnable},
        bought=[(w, bought[w.pk]) for w in mine if w.pk in bought],
        unavailable="" if sellable else NOT_SELLABLE,
    )


@dataclass(frozen=True)
class CurrencyBalances:
    currency: str
    cents: dict[str, int]  # per bucket (earnings.BUCKETS); available may be negative


def creator_balances(*, publisher_id: int) -> list[CurrencyBalances]:
    """The creator's balances per currency they earned in: the creator account's default
    currency first (USD when none), then the others by code. Empty before the first sale."""
    rows = (
        LedgerEntry.objects.filter(publisher_id=publisher_id)
        .values("currency", "bucket")
        .annotate(total=Sum("amount_cents"))
    )
    found: dict[str, dict[str, int]] = {}
    for row in rows:
        found.setdefault(row["currency"], dict.fromkeys(BUCKETS, 0))[row["bucket"]] = int(
            row["total"]
        )
    creator = CreatorAccount.objects.filter(publisher_id=publisher_id).first()
    default = (creator.default_currency if creator else "") or "usd"
    order = sorted(found, key=lambda code: (code != default, code))
    return [CurrencyBalances(code, found[code]) for code in order]
