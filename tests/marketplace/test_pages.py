"""The public marketplace pages: browsing and searching without an account (htmx results and
plain GET), a listing page with safe Markdown and its measured figures, a publisher page, and
hidden listings that stay hidden."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from marketplace.models import Category, Publisher, Review
from tests.helpers.marketplace import make_listing
from tests.helpers.personas import World, logged_in

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "market-results"}


@pytest.fixture
def support(publisher: Publisher, categories: dict[str, Category]) -> Any:
    return make_listing(
        publisher=publisher,
        category=categories["support"],
        title="Inbox Concierge",
        summary="Answers customer emails from your help center, with citations.",
        description="## How it works\n\n**Reads** the email.\n\n<script>alert(1)</script>",
        tags=["email", "support"],
        slug="inbox-concierge",
        featured=True,
        install_count=12,
        rating_avg=Decimal("4.50"),
        review_count=2,
        run_count=40,
        success_rate=0.95,
        p95_latency_ms=1800,
        median_cost_usd=Decimal("0.0021"),
    )


def test_anyone_can_browse_the_front_page(
    client: Client,
    support: Any,
    publisher: Publisher,
    categories: dict[str, Category],
    django_assert_max_num_queries: Any,
) -> None:
    for index in range(8):  # more listings must not mean more queries
        make_listing(publisher=publisher, category=categories["finance"], title=f"Ledger {index}")
    with django_assert_max_num_queries(8):
        response = client.get(reverse("marketplace"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Featured" in html
    assert "Inbox Concierge" in html
    assert "Customer support" in html  # categories with listings
    assert "Finance" in html
    assert "★ 4.5" in html
    assert "Ledger 7" in html
    # cards carry the measured run figures, or say there are none yet
    assert "95% success · p95 1,800 ms · $0.0021/run" in html
    assert "(40 runs)" in html
    assert "No runs measured yet" in html


def test_search_works_without_javascript_and_as_you_type(client: Client, support: Any) -> None:
    plain = client.get(reverse("marketplace"), {"q": "answers customer emails"})
    assert plain.status_code == 200
    assert "Inbox Concierge" in plain.content.decode()
    assert "<!DOCTYPE html>" in plain.content.decode()
    partial = client.get(reverse("marketplace"), {"q": "concierge"}, **HX)
    html = partial.content.decode()
    assert 'id="market-results"' in html
    assert "Inbox Concierge" in html
    assert "<!DOCTYPE html>" not in html  # only the results are swapped
    nothing = client.get(reverse("marketplace"), {"q": "quantum chromodynamics"}, **HX)
    assert "No listings match “quantum chromodynamics”" in nothing.content.decode()


def test_search_results_say_why_they_matched_and_gibberish_finds_nothing(
    client: Client,
    support: Any,
    publisher: Publisher,
    categories: dict[str, Category],
) -> None:
    make_listing(
        publisher=publisher,
        category=categories["finance"],
        title="Invoice Checker",
        summary="Checks each invoice against the purchase order.",
        tags=["finance"],
    )
    html = client.get(reverse("marketplace"), {"q": "invoice"}).content.decode()
    assert "1 match for “invoice”" in html
    assert "Inbox Concierge" not in html  # the nearest of the rest is not a match
    assert "Matched: title, summary" in html
    assert "<mark>Invoice</mark> Checker" in html
    assert "each <mark>invoice</mark>" in html

    gibberish = client.get(reverse("marketplace"), {"q": "xyzzyqq"}).content.decode()
    assert "No listings match “xyzzyqq”" in gibberish
    assert "match for" not in gibberish
    assert "matches for" not in gibberish
    assert "Check the spelling" in gibberish
    assert 'href="?category=support"' in gibberish  # somewhere to go from here


def test_filters_narrow_and_bad_values_are_named(
    client: Client,
    support: Any,
    publisher: Publisher,
    categories: dict[str, Category],
) -> None:
    make_listing(publisher=publisher, category=categories["finance"], title="Invoice Checker")
    finance = client.get(reverse("marketplace"), {"category": "finance"}).content.decode()
    assert "Invoice Checker" in finance
    assert "Inbox Concierge" not in finance
    bad = client.get(reverse("marketplace"), {"sort": "cheapest", "category": "nope"})
    html = bad.content.decode()
    assert bad.status_code == 200
    assert "Select a valid choice" in html
    assert 'id="id_sort_error"' in html
    assert "Inbox Concierge" in html  # the invalid filters are ignored, results still shown


def test_listing_page_renders_safe_markdown_and_measured_figures(
    client: Client, support: Any, world: World
) -> None:
    Review.objects.create(
        listing=support,
        workspace=world.workspace_a,
        author=world.owner,
        rating=5,
        text="Saved us hours.",
        reply="Thank you!",
        replied_at=timezone.now(),
    )
    response = client.get(reverse("marketplace_listing", kwargs={"slug": "inbox-concierge"}))
    html = response.content.decode()
    assert response.status_code == 200
    assert "<h2>How it works</h2>" in html
    assert "<strong>Reads</strong>" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html
    assert "95%" in html
    assert "1,800 ms" in html
    assert "$0.0021" in html
    assert "Saved us hours." in html
    assert "Thank you!" in html
    assert "Sign in to install" in html  # anonymous visitor


def _queries(client: Client, url: str, **params: Any) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, params).status_code == 200
    return len(captured.captured_queries)


def test_search_results_and_listing_page_run_the_same_queries_for_more_listings(
    client: Client,
    support: Any,
    publisher: Publisher,
    categories: dict[str, Category],
    world: World,
) -> None:
    member = logged_in(world.owner)  # signed in: the page also looks up installs and reviews
    listing_url = reverse("marketplace_listing", kwargs={"slug": "inbox-concierge"})
    before = {
        "search": _queries(client, reverse("marketplace"), q="customer emails"),
        "partial": _queries(client, reverse("marketplace"), q="emails", category="support"),
        "listing": _queries(member, listing_url),
    }
    for index in range(12):
        make_listing(
            publisher=publisher,
            category=categories["support"],
            title=f"Email triage {index}",
            summary="Sorts customer emails by urgency.",
        )
    after = {
        "search": _queries(client, reverse("marketplace"), q="customer emails"),
        "partial": _queries(client, reverse("marketplace"), q="emails", category="support"),
        "listing": _queries(member, listing_url),
    }
    assert after == before
    assert max(after.values()) <= 12
    html = client.get(reverse("marketplace"), {"q": "customer emails"}).content.decode()
    assert "Email triage 11" in html


def test_publisher_page_lists_public_listings(
    client: Client,
    support: Any,
    publisher: Publisher,
    categories: dict[str, Category],
) -> None:
    make_listing(
        publisher=publisher, category=categories["support"], title="Secret draft", approved=False
    )
    html = client.get(reverse("marketplace_publisher", kwargs={"slug": "acme"})).content.decode()
    assert "Acme Labs" in html
    assert "Inbox Concierge" in html
    assert "Secret draft" not in html


def test_hidden_listings_are_not_found(
    client: Client,
    publisher: Publisher,
    categories: dict[str, Category],
) -> None:
    draft = make_listing(
        publisher=publisher, category=categories["support"], title="Draft", approved=False
    )
    gone = make_listing(
        publisher=publisher,
        category=categories["support"],
        title="Gone",
        unlisted_at=timezone.now(),
    )
    for listing in (draft, gone):
        url = reverse("marketplace_listing", kwargs={"slug": listing.slug})
        assert client.get(url).status_code == 404
    assert (
        client.get(reverse("marketplace_publisher", kwargs={"slug": "nobody"})).status_code == 404
    )
    home = client.get(reverse("marketplace"), {"q": "Draft Gone"}).content.decode()
    assert "No listings match “Draft Gone”" in home
