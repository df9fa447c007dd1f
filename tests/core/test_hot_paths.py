"""The requests the platform serves most, held to a fixed number of queries (issue 17, "Serving
throughput"; bench/http.py measures them over HTTP): workspace resolution, API-key
authentication and the throttles, the agents list, the public marketplace front page and
search (cached, docs/decisions.md 99). More rows must not mean more queries; the cached
marketplace pages hold nothing of the person who asked and show a write at once."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents.services import agent_create
from marketplace.models import Category, Publisher
from tests.helpers.marketplace import make_listing
from tests.helpers.personas import World, access_of, key_client, logged_in

pytestmark = pytest.mark.django_db


def _agents(world: World, count: int, start: int = 0) -> None:
    with schema_context(world.workspace_a.schema_name):
        for index in range(start, start + count):
            agent_create(
                access=access_of(world.owner, world.workspace_a),
                name=f"Agent {index}",
                model="offline:demo",
            )


# --- the API: key authentication, throttles, workspace, the agents list ---------------------


def test_the_agents_list_costs_the_same_queries_for_1_or_13_agents(
    world: World, django_assert_num_queries: Any
) -> None:
    api = key_client(world, ["workspace.view"])
    _agents(world, 1)
    api.get("/api/v1/agents/")  # the key's first use records last_used_at (once a minute)
    # The key with its workspace (schema-qualified: no SET search_path before it), SET
    # search_path to the workspace and the page (not full: it is the last, so no COUNT). The
    # throttles read Redis only.
    with django_assert_num_queries(3):
        one = api.get("/api/v1/agents/")
    _agents(world, 12, start=1)
    with django_assert_num_queries(3):
        thirteen = api.get("/api/v1/agents/")
    with django_assert_num_queries(4):  # a full page: the total needs the COUNT
        paged = api.get("/api/v1/agents/", {"limit": 5, "offset": 5})
    assert one.status_code == thirteen.status_code == 200
    assert one.json()["count"] == 1
    assert thirteen.json()["count"] == 13
    assert thirteen.json()["results"][0]["current_version"]["number"] == 1
    assert paged.json()["count"] == 13
    assert len(paged.json()["results"]) == 5
    last = api.get("/api/v1/agents/", {"limit": 5, "offset": 10}).json()
    beyond = api.get("/api/v1/agents/", {"limit": 5, "offset": 20}).json()
    assert (last["count"], len(last["results"]), last["next"]) == (13, 3, None)
    assert (beyond["count"], beyond["results"]) == (13, [])


def test_a_run_start_through_the_api_has_a_fixed_query_budget(
    world: World, django_assert_max_num_queries: Any
) -> None:
    api = key_client(world, ["run", "workspace.view"])
    _agents(world, 1)
    agent_id = api.get("/api/v1/agents/").json()["results"][0]["id"]
    # The key, the agent and its version, the run row; SET search_path once; in a test the
    # service's transaction is a savepoint and its release (a transaction's BEGIN and COMMIT
    # are not queries in production).
    with django_assert_max_num_queries(7):
        started = api.post(f"/api/v1/agents/{agent_id}/runs/", {"input": "Hi"}, format="json")
    assert started.status_code == 202


def test_a_session_api_call_resolves_its_workspace_in_one_query(
    world: World, django_assert_num_queries: Any
) -> None:
    _agents(world, 2)
    client = logged_in(world.owner)
    client.get("/api/v1/agents/", HTTP_X_WORKSPACE="alpha")
    # SET public, the session, the user, the membership (workspace resolution), SET, the page.
    with django_assert_num_queries(6):
        response = client.get("/api/v1/agents/", HTTP_X_WORKSPACE="alpha")
    assert response.status_code == 200
    # An outsider naming the workspace: the same resolution, refused as not found.
    assert (
        logged_in(world.outsider).get("/api/v1/agents/", HTTP_X_WORKSPACE="alpha").status_code
        == 404
    )


def test_the_throttle_counts_across_requests_without_queries(
    world: World, settings: Any, django_assert_max_num_queries: Any
) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]},
    }
    api = key_client(world, ["workspace.view"])
    api.get("/api/v1/agents/")
    settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["api_key"] = "4/min"
    cache.clear()
    with django_assert_max_num_queries(3):  # the same as without a limit close by
        statuses = [api.get("/api/v1/agents/").status_code for _ in range(1)]
    statuses += [api.get("/api/v1/agents/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 200, 429]


# --- pages ------------------------------------------------------------------------------


def test_a_workspace_page_costs_the_same_queries_for_1_or_13_agents(
    world: World, owner_client: Client, django_assert_max_num_queries: Any
) -> None:
    url = reverse("agent_list", kwargs={"workspace_slug": "alpha"})
    _agents(world, 1)
    owner_client.get(url)
    with django_assert_max_num_queries(12) as one:
        assert owner_client.get(url).status_code == 200
    _agents(world, 12, start=1)
    with django_assert_max_num_queries(12) as thirteen:
        assert owner_client.get(url).status_code == 200
    assert len(thirteen.captured_queries) == len(one.captured_queries)
    # Workspace resolution refuses an outsider the same way as a missing workspace.
    assert logged_in(world.outsider).get(url).status_code == 404


@pytest.fixture
def cached_pages(settings: Any) -> None:
    """The public pages cached as in production (tests turn it off: their rows roll back)."""
    settings.MARKETPLACE_PAGE_CACHE_SECONDS = 30
    cache.clear()


def test_the_marketplace_front_page_is_served_from_the_cache_without_queries(
    client: Client,
    cached_pages: None,
    publisher: Publisher,
    categories: dict[str, Category],
    django_assert_max_num_queries: Any,
    django_assert_num_queries: Any,
) -> None:
    for index in range(8):  # more listings must not mean more queries
        make_listing(publisher=publisher, category=categories["finance"], title=f"Ledger {index}")
    with django_assert_max_num_queries(8):
        first = client.get(reverse("marketplace"))
    with django_assert_num_queries(0):  # anonymous: no session, no user, the cached body
        again = client.get(reverse("marketplace"))
    assert first.status_code == again.status_code == 200
    assert "Ledger 7" in first.content.decode()
    assert "Ledger 7" in again.content.decode()


def test_a_marketplace_search_is_cached_per_query(
    client: Client,
    cached_pages: None,
    publisher: Publisher,
    categories: dict[str, Category],
    django_assert_num_queries: Any,
) -> None:
    make_listing(
        publisher=publisher,
        category=categories["support"],
        title="Inbox Concierge",
        summary="Answers customer emails.",
        tags=["email"],
    )
    make_listing(publisher=publisher, category=categories["finance"], title="Ledger Keeper")
    url = reverse("marketplace")
    client.get(url, {"q": "email"})
    with django_assert_num_queries(0):
        email = client.get(url, {"q": "email"}).content.decode()
    ledger = client.get(url, {"q": "ledger"}).content.decode()  # another query: its own results
    assert "Inbox Concierge" in email
    assert "Ledger Keeper" not in email
    assert "Ledger Keeper" in ledger
    assert "Inbox Concierge" not in ledger
    # htmx asks for the results alone: cached apart from the whole body.
    partial = client.get(
        url, {"q": "email"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="market-results"
    )
    assert partial.content.decode().lstrip().startswith('<div id="market-results"')


def test_a_listing_write_shows_at_once_on_the_cached_front_page(
    client: Client,
    cached_pages: None,
    publisher: Publisher,
    categories: dict[str, Category],
) -> None:
    make_listing(publisher=publisher, category=categories["finance"], title="Ledger Keeper")
    assert "Ledger Keeper" in client.get(reverse("marketplace")).content.decode()
    listing = make_listing(
        publisher=publisher, category=categories["support"], title="Inbox Concierge"
    )
    assert "Inbox Concierge" in client.get(reverse("marketplace")).content.decode()
    listing.title = "Inbox Butler"
    listing.save()
    html = client.get(reverse("marketplace")).content.decode()
    assert 'title="Inbox Butler"' in html
    assert 'title="Inbox Concierge"' not in html


def test_the_cached_front_page_holds_nothing_of_who_asked_first(
    world: World,
    cached_pages: None,
    publisher: Publisher,
    categories: dict[str, Category],
) -> None:
    make_listing(publisher=publisher, category=categories["finance"], title="Ledger Keeper")
    owners = logged_in(world.owner).get(reverse("marketplace")).content.decode()  # fills it
    outsiders = logged_in(world.outsider).get(reverse("marketplace")).content.decode()
    anonymous = Client().get(reverse("marketplace")).content.decode()
    assert world.owner.email in owners or "Alpha Inc" in owners  # the owner's own navigation
    for html in (outsiders, anonymous):
        assert "Ledger Keeper" in html
        assert world.owner.email not in html
        assert "Alpha Inc" not in html
    assert "Bravo Ltd" in outsiders or world.outsider.email in outsiders
