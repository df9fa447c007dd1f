"""Marketplace search and browsing reads: keyword, semantic and fused search over public
listings only, filters and sorting, full pages under filters, constant query counts."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.exceptions import NotFound, ValidationFailed
from marketplace import selectors
from marketplace.models import Category, Listing, Publisher, Review
from marketplace.search_index import index_all
from marketplace.selectors import browse_home, listing_detail, listing_search, publisher_listings
from tests.fakes import FakeOpenAI
from tests.helpers.marketplace import make_listing
from tests.helpers.personas import World

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue(categories: dict[str, Category], publisher: Publisher) -> dict[str, Listing]:
    now = timezone.now()
    made = {
        "inbox": make_listing(
            publisher=publisher,
            category=categories["support"],
            title="Inbox Concierge",
            summary="Drafts replies to customer emails and answers support questions.",
            description="Reads the support inbox and answers each customer email with a reply.",
            tags=["support", "email"],
            rating_avg=Decimal("4.60"),
            install_count=50,
            published_at=now - timedelta(days=3),
        ),
        "invoices": make_listing(
            publisher=publisher,
            category=categories["finance"],
            kind=Listing.Kind.WORKFLOW,
            title="Invoice Reconciler",
            summary="Matches invoices to bank transactions every night.",
            description="Flags mismatches for review and exports a ledger report.",
            tags=["invoices", "accounting"],
            pricing=Listing.Pricing.PER_RUN,
            price_cents=5,
            rating_avg=Decimal("3.90"),
            install_count=200,
            providers=["openai"],
            published_at=now - timedelta(days=10),
        ),
        "campaigns": make_listing(
            publisher=publisher,
            category=categories["marketing"],
            title="Campaign Planner",
            summary="Plans social media campaigns and writes the posts.",
            tags=["social", "marketing"],
            pricing=Listing.Pricing.ONE_TIME,
            price_cents=900,
            rating_avg=Decimal("4.20"),
            install_count=10,
            providers=["anthropic"],
            featured=True,
            published_at=now - timedelta(days=1),
        ),
        "refunds": make_listing(
            publisher=publisher,
            category=categories["support"],
            kind=Listing.Kind.WORKFLOW,
            title="Refund Helper",
            summary="Processes refund requests for orders.",
            tags=["refunds", "orders"],
            install_count=5,
            published_at=now - timedelta(days=20),
        ),
        # Never public: text that would match the email searches.
        "unlisted": make_listing(
            publisher=publisher,
            category=categories["support"],
            title="Hidden Email Responder",
            summary="Answers customer emails and support questions in the inbox.",
            tags=["support", "email"],
            unlisted_at=now,
            unlisted_reason="spam",
            install_count=1000,
            featured=True,
        ),
        "pending": make_listing(
            publisher=publisher,
            category=categories["support"],
            title="Draft Email Answerer",
            summary="Answers customer emails and support questions in the inbox.",
            tags=["support", "email"],
            approved=False,
            install_count=1000,
            featured=True,
        ),
    }
    return made


def titles(listings: list[Listing]) -> list[str]:
    return [listing.title for listing in listings]


def test_keyword_finds_by_title_and_by_tag(catalogue: dict[str, Listing]) -> None:
    by_title = listing_search(q="reconciler", mode="keyword")
    assert titles(by_title.listings) == ["Invoice Reconciler"]
    by_tag = listing_search(q="accounting", mode="keyword")  # only in the tags
    assert titles(by_tag.listings) == ["Invoice Reconciler"]
    # websearch syntax: a quoted phrase and an exclusion
    assert titles(listing_search(q='"social media" -email', mode="keyword").listings) == [
        "Campaign Planner"
    ]


def test_semantic_finds_a_listing_without_the_query_words(catalogue: dict[str, Listing]) -> None:
    # The hashing embedder matches shared vocabulary (with crude stemming), not meaning:
    # "answers", "customer" and "emails" are shared; "bot" appears in no listing.
    query = "bot that answers customer emails"
    assert "bot" not in Listing.objects.get(title="Inbox Concierge").description.lower()
    assert listing_search(q=query, mode="keyword").listings == []  # every word must match
    semantic = listing_search(q=query, mode="semantic")
    assert semantic.listings[0].title == "Inbox Concierge"


def test_combined_fuses_keyword_and_semantic(catalogue: dict[str, Listing]) -> None:
    # Keyword finds nothing (no listing says "bot"); the fused list still has the match.
    fused = listing_search(q="bot that answers customer emails")
    assert fused.mode == "combined"
    assert fused.listings[0].title == "Inbox Concierge"
    # Both agree on the refund workflow: it comes first.
    assert listing_search(q="refund requests").listings[0].title == "Refund Helper"
    # Reciprocal rank fusion: in both lists beats first in one only.
    assert selectors._fuse([1, 2, 3], [3, 1]) == [1, 3, 2]  # noqa: SLF001 (no public way to rank bare ids)


def test_stop_word_query_does_not_fail(catalogue: dict[str, Listing]) -> None:
    assert listing_search(q="the and of", mode="semantic").listings == []
    listing_search(q="the and of")  # no cosine distance to a zero vector; no error


def test_filters(catalogue: dict[str, Listing], categories: dict[str, Category]) -> None:
    support = listing_search(category="support")
    assert set(titles(support.listings)) == {"Inbox Concierge", "Refund Helper"}
    assert titles(listing_search(category=categories["finance"]).listings) == ["Invoice Reconciler"]
    workflows = listing_search(kind="workflow")
    assert set(titles(workflows.listings)) == {"Invoice Reconciler", "Refund Helper"}
    free = listing_search(pricing="free")
    assert set(titles(free.listings)) == {"Inbox Concierge", "Refund Helper"}
    paid = listing_search(pricing="paid")
    assert set(titles(paid.listings)) == {"Invoice Reconciler", "Campaign Planner"}
    rated = listing_search(min_rating=Decimal("4.0"))
    assert set(titles(rated.listings)) == {"Inbox Concierge", "Campaign Planner"}
    assert titles(listing_search(provider="anthropic").listings) == ["Campaign Planner"]
    # Filters apply to searches too.
    assert listing_search(q="customer emails support", category="finance").listings == []
    with pytest.raises(ValidationFailed):
        listing_search(pricing="cheap")
    with pytest.raises(ValidationFailed):
        listing_search(sort="price")


def test_sorting(catalogue: dict[str, Listing]) -> None:
    assert titles(listing_search(sort="installs").listings) == [
        "Invoice Reconciler",
        "Inbox Concierge",
        "Campaign Planner",
        "Refund Helper",
    ]
    # Unrated listings come last.
    assert titles(listing_search(sort="rating").listings) == [
        "Inbox Concierge",
        "Campaign Planner",
        "Invoice Reconciler",
        "Refund Helper",
    ]
    assert titles(listing_search(sort="new").listings)[0] == "Campaign Planner"
    # A search reordered by installs keeps only the matches.
    matched = listing_search(q="support customer emails", sort="installs", mode="keyword")
    assert titles(matched.listings) == ["Inbox Concierge"]


def test_pagination(catalogue: dict[str, Listing]) -> None:
    first = listing_search(sort="installs", limit=3)
    assert len(first.listings) == 3
    assert first.has_more
    second = listing_search(sort="installs", limit=3, offset=3)
    assert titles(second.listings) == ["Refund Helper"]
    assert not second.has_more


def test_unlisted_and_unapproved_never_appear(catalogue: dict[str, Listing]) -> None:
    hidden = {"Hidden Email Responder", "Draft Email Answerer"}
    results = [
        listing_search(),
        listing_search(sort="installs"),
        listing_search(q="email", mode="keyword"),
        listing_search(q="answers customer emails", mode="semantic"),
        listing_search(q="answers customer emails"),
        listing_search(category="support"),
    ]
    for result in results:
        assert not hidden & set(titles(result.listings)), result
    home = browse_home()
    for section in (home.featured, home.newest, home.top_rated, home.most_installed):
        assert not hidden & set(titles(section))
    for key in ("unlisted", "pending"):
        with pytest.raises(NotFound):
            listing_detail(slug=catalogue[key].slug)
    assert not hidden & set(titles(publisher_listings(slug="acme").listings))
    counts = {category.slug: category.listing_count for category in home.categories}
    assert counts == {"support": 2, "finance": 1, "marketing": 1}


def test_browse_home_sections(catalogue: dict[str, Listing]) -> None:
    home = browse_home()
    assert titles(home.featured) == ["Campaign Planner"]
    assert titles(home.newest)[0] == "Campaign Planner"
    assert titles(home.top_rated) == ["Inbox Concierge", "Campaign Planner", "Invoice Reconciler"]
    assert titles(home.most_installed)[0] == "Invoice Reconciler"


def test_listing_detail_and_publisher(world: World, catalogue: dict[str, Listing]) -> None:
    inbox = catalogue["inbox"]
    Review.objects.create(listing=inbox, workspace=world.workspace_a, rating=5, text="Great")
    Review.objects.create(listing=inbox, workspace=world.workspace_b, rating=4, text="Good")
    listing = listing_detail(slug=inbox.slug)
    assert listing.publisher.display_name == "Acme Labs"
    assert listing.category.slug == "support"
    assert listing.current_version is not None
    assert listing.current_version.number == 1
    assert [review.text for review in listing.recent_reviews] == ["Good", "Great"]
    with pytest.raises(NotFound):
        listing_detail(slug="no-such-listing")
    page = publisher_listings(slug="acme")
    assert page.publisher.slug == "acme"
    assert len(page.listings) == 4
    with pytest.raises(NotFound):
        publisher_listings(slug="nobody")


def test_filtered_search_fills_a_page(
    categories: dict[str, Category], publisher: Publisher
) -> None:
    # Given 120 similar listings of which half are support agents…
    for i in range(60):
        for category, kind in (
            (categories["support"], Listing.Kind.AGENT),
            (categories["marketing"], Listing.Kind.WORKFLOW),
        ):
            make_listing(
                publisher=publisher,
                category=category,
                kind=kind,
                title=f"Email assistant {i} for {category.slug}",
                summary="Answers customer emails and drafts replies.",
                tags=["email"],
                index=False,
            )
    assert index_all(batch=50) == 120
    # …every search mode, filtered, still returns a full page of only matching rows.
    for mode in ("combined", "semantic", "keyword"):
        result = listing_search(
            q="answer customer email", category="support", kind="agent", mode=mode, limit=24
        )
        assert len(result.listings) == 24, mode
        assert result.has_more, mode
        assert {(x.category_id, x.kind) for x in result.listings} == {
            (categories["support"].pk, "agent")
        }


def _count_queries(function: Callable[[], object]) -> int:
    with CaptureQueriesContext(connection) as context:
        function()
    return len(context.captured_queries)


def test_query_counts_do_not_grow_with_listings(
    world: World, categories: dict[str, Category], publisher: Publisher
) -> None:
    other = Publisher.objects.create(slug="other", display_name="Other")
    titles = itertools.count()

    def add(count: int) -> None:
        for i in range(count):
            make_listing(
                publisher=publisher if i % 2 else other,
                category=list(categories.values())[i % 3],
                title=f"Support email helper {next(titles)}",
                summary="Answers customer emails.",
                tags=["email", "support"],
                rating_avg=Decimal("4.0"),
                featured=i % 4 == 0,
                index=False,
            )
        index_all()

    calls: dict[str, Callable[[], object]] = {
        "browse": lambda: listing_search(category="support", sort="rating"),
        "keyword": lambda: listing_search(q="email", mode="keyword"),
        "semantic": lambda: listing_search(q="email helper", mode="semantic"),
        "combined": lambda: listing_search(q="email helper", kind="agent"),
        "combined_sorted": lambda: listing_search(q="email helper", sort="installs"),
        "home": browse_home,
        "publisher": lambda: publisher_listings(slug="acme"),
    }
    add(5)
    first = Listing.objects.filter(current_version__isnull=False).first()
    assert first is not None
    for workspace in (world.workspace_a, world.workspace_b):
        Review.objects.create(listing=first, workspace=workspace, rating=5)
    calls["detail"] = lambda: listing_detail(slug=first.slug)
    small = {name: _count_queries(call) for name, call in calls.items()}
    add(35)
    large = {name: _count_queries(call) for name, call in calls.items()}
    assert small == large
    assert large["home"] <= 5
    assert large["detail"] <= 3
    assert large["browse"] == 1


def test_reindex_listings_moves_the_listings_to_the_configured_embedder(
    catalogue: dict[str, Listing], settings: Any
) -> None:
    before = list(Listing.objects.get(title="Inbox Concierge").embedding)
    with FakeOpenAI() as fake:
        settings.LLM_PLATFORM_KEYS = {**settings.LLM_PLATFORM_KEYS, "openai": "sk-test"}
        settings.LLM_PLATFORM_BASE_URLS = {
            **settings.LLM_PLATFORM_BASE_URLS,
            "openai": fake.base_url,
        }
        # Re-embedding the workspaces' knowledge leaves the listings as they are.
        call_command("reembed", embedder="openai", stdout=StringIO(), stderr=StringIO())
        assert list(Listing.objects.get(title="Inbox Concierge").embedding) == before

        settings.EMBEDDER = "openai"
        out, err = StringIO(), StringIO()
        call_command("reindex_listings", stdout=out, stderr=err)
        total = Listing.objects.count()
        assert f"marketplace: {total} listing(s) embedded with openai." in out.getvalue()
        assert f"{total}/{total}" in err.getvalue()  # the progress bar reached the end
        sent = [text for r in fake.requests_to("embeddings") for text in r.body["input"]]
        assert any(text.startswith("Inbox Concierge") for text in sent)
        assert list(Listing.objects.get(title="Inbox Concierge").embedding) != before

        # No floor is calibrated for openai: its semantic side adds nothing until an operator
        # sets one (nearest is not near).
        assert listing_search(q="answers customer emails", mode="semantic").listings == []
        settings.MARKETPLACE_SEMANTIC_MAX_DISTANCE = 0.97
        # Search embeds its query with the same embedder and still finds the listing.
        semantic = listing_search(q="answers customer emails", mode="semantic")
        assert semantic.listings[0].title == "Inbox Concierge"
        assert fake.requests_to("embeddings")[-1].body["input"] == ["answers customer emails"]
        assert fake.server_errors == []


# --- relevance: a calibrated semantic floor, and why each result matched -----------------------


@pytest.fixture
def shipped_catalogue() -> None:
    from marketplace.catalog_import import CATALOG_DIR, import_catalog

    assert import_catalog(CATALOG_DIR).errors == []


@pytest.mark.parametrize("mode", ["combined", "semantic", "keyword"])
def test_gibberish_finds_nothing(shipped_catalogue: None, mode: selectors.Mode) -> None:
    # Before the floor, the nearest listings to any string were results: 14 "matches" here.
    for query in ("xyzzyqq", "qwertyuiop", "blorptang zxcvb"):
        result = listing_search(q=query, mode=mode)
        assert result.listings == [], (query, titles(result.listings))
        assert not result.total_estimate


def test_invoice_finds_the_invoice_listing_first_and_says_why(shipped_catalogue: None) -> None:
    result = listing_search(q="invoice", explain=True)
    assert result.listings[0].slug == "invoice-data-extractor"
    first = result.hits[0].match
    assert first is not None
    assert first.reason == "Matched: title, tags, summary, description"
    assert ("Invoice", True) in first.title  # the word is highlighted in the title
    # Everything else contains the word (its description quotes an invoice): each says where,
    # and nothing is there only for being the nearest of an unrelated lot.
    for hit in result.hits:
        assert hit.match is not None, hit.listing.slug
        assert hit.match.fields, hit.listing.slug
        assert "invoice" in (hit.listing.title + hit.listing.summary).lower() or (
            hit.match.reason == "Matched: description"
        )
    assert {listing.slug for listing in result.listings[1:]} == {
        # They quote an invoice in their examples.
        "api-doc-writer",
        "support-reply-drafter",
        "crm-notes-cleaner",
        "seo-brief-builder",
    }
    assert result.total_estimate == 5


def test_a_semantic_only_hit_says_similar_in_meaning(
    catalogue: dict[str, Listing], settings: Any
) -> None:
    # Found by both sides: the reason names the fields holding a query word ("bot" is in none,
    # the title holds none of them).
    result = listing_search(q="bot that answers customer emails", explain=True)
    assert result.listings[0].title == "Inbox Concierge"
    match = result.hits[0].match
    assert match is not None
    assert match.semantic
    assert match.reason == "Matched: tags, summary, description"
    # A misspelling no field holds, within a wider floor an operator set: found by meaning
    # (shared letters, for the hashing embedder) only, and it says so.
    assert listing_search(q="reconsiler").listings == []  # 0.88 from the reconciler
    settings.MARKETPLACE_SEMANTIC_MAX_DISTANCE = 0.9
    typo = listing_search(q="reconsiler", explain=True)
    assert titles(typo.listings)[0] == "Invoice Reconciler"
    hit = typo.hits[0]
    assert hit.match is not None
    assert hit.match.fields == ()
    assert hit.match.reason == "Similar in meaning"
    assert hit.match.title == [("Invoice Reconciler", False)]  # nothing to highlight


def test_an_embedder_without_a_calibrated_floor_adds_no_semantic_hits(
    catalogue: dict[str, Listing], settings: Any
) -> None:
    from marketplace.search_calibration import semantic_max_distance

    assert semantic_max_distance("hashing-v2") == 0.59  # bench/search_relevance.py
    assert semantic_max_distance("some-new-embedder") is None
    settings.MARKETPLACE_SEMANTIC_MAX_DISTANCE = 2.0  # the operator's override: anything goes
    assert semantic_max_distance("some-new-embedder") == 2.0
    assert len(listing_search(q="xyzzyqq", mode="semantic").listings) == 4
