"""The marketplace API: public search, listing detail, versions and reviews without an account;
publish, install, upgrade, uninstall, review, reply and flag for a workspace. Errors name the
field; another workspace's install is a 404; a key without `build` changes nothing (403);
a listing that is not public does not exist (404)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from accounts.models import User
from agents.gateway import aliases
from agents.models import Agent, ProviderCredential
from agents.services import agent_create
from marketplace import services
from marketplace.api import urls as api_urls
from marketplace.models import Category, Flag, Listing, ListingVersion
from tests.helpers.marketplace import make_listing
from tests.helpers.personas import World, access_of, key_client, logged_in

pytestmark = pytest.mark.django_db

API = "/api/v1/marketplace/"
EVERYTHING = ["workspace.view", "build", "run"]
SECRET = "sk-live-never-publish-me-9876"


@pytest.fixture
def alpha(world: World) -> APIClient:
    """The publisher's workspace."""
    return key_client(world, EVERYTHING)


@pytest.fixture
def bravo(world: World) -> APIClient:
    """Another workspace: installs and reviews."""
    return key_client(world, EVERYTHING, workspace=world.workspace_b)


@pytest.fixture
def staff(world: World) -> User:
    return User.objects.create_superuser(email="mod@platform.test", password="x")


@pytest.fixture
def category(world: World) -> Category:
    return Category.objects.create(slug="support", name="Customer support")


@pytest.fixture
def agent_id(world: World) -> int:
    """An agent of alpha on the offline provider."""
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(
            access=access,
            name="Inbox Concierge",
            model="offline:demo",
            system_prompt="Answer customer emails politely.",
        )
        return agent.pk


def publish(client: APIClient, agent_id: int, **fields: Any) -> dict[str, Any]:
    body = {
        "kind": "agent",
        "source_id": agent_id,
        "title": "Inbox Concierge",
        "summary": "Answers customer emails from your help center.",
        "description": "## How it works\n\nReads the email, drafts a reply.",
        "category": "support",
        "tags": ["email", "support"],
        "changelog": "First release.",
        "example_inputs": ["Where is my order?"],
        **fields,
    }
    response = client.post(API + "listings/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def approve(staff: User, slug: str) -> None:
    version = ListingVersion.objects.filter(listing__slug=slug).order_by("-number").first()
    assert version is not None
    services.version_approve(user=staff, version=version)


@pytest.fixture
def listing(alpha: APIClient, agent_id: int, category: Category, staff: User) -> str:
    """A published, approved agent listing; its slug."""
    slug = publish(alpha, agent_id)["listing"]
    approve(staff, slug)
    return slug


def ran(world: World, slug: str) -> None:
    """Workspace bravo completed a run of its install (what the run telemetry records)."""
    listing = Listing.objects.get(slug=slug)
    assert listing.current_version_id is not None
    services.record_run(
        listing_version_id=listing.current_version_id,
        succeeded=True,
        latency_ms=420,
        cost_usd=Decimal("0.002"),
        workspace=world.workspace_b,
    )


# --- Public reading


def test_anyone_searches_and_reads_a_listing_without_an_account(listing: str) -> None:
    anonymous = APIClient()
    found = anonymous.get(API + "listings/", {"q": "bot that answers customer emails"})
    assert found.status_code == 200, found.content
    body = found.json()
    assert [card["slug"] for card in body["results"]] == [listing]
    card = body["results"][0]
    assert card["category"] == "support"
    assert card["kind"] == "agent"
    assert card["publisher"]["display_name"]
    assert "description" not in card

    detail = anonymous.get(API + f"listings/{listing}/").json()
    assert detail["title"] == "Inbox Concierge"
    assert detail["current_version"]["number"] == 1
    assert detail["current_version"]["changelog"] == "First release."
    assert detail["current_version"]["example_inputs"] == ["Where is my order?"]
    assert "definition" not in detail["current_version"]

    versions = anonymous.get(API + f"listings/{listing}/versions/").json()
    assert [v["number"] for v in versions["results"]] == [1]
    assert versions["results"][0]["definition"]["agent"]["system_prompt"].startswith(
        "Answer customer"
    )


def test_search_filters_and_bad_parameters_name_the_field(listing: str) -> None:
    anonymous = APIClient()
    assert anonymous.get(API + "listings/", {"kind": "workflow"}).json()["results"] == []
    assert anonymous.get(API + "listings/", {"category": "finance"}).json()["results"] == []
    browse = anonymous.get(API + "listings/", {"sort": "new", "price": "free"}).json()
    assert browse["mode"] == "browse"
    assert len(browse["results"]) == 1

    bad = anonymous.get(API + "listings/", {"sort": "loudest", "limit": "0"})
    assert bad.status_code == 400
    fields = bad.json()["error"]["fields"]
    assert "sort" in fields
    assert "limit" in fields


def test_search_and_detail_run_a_bounded_number_of_queries(
    listing: str, category: Category, django_assert_max_num_queries: Any
) -> None:
    publisher = Listing.objects.get(slug=listing).publisher
    for index in range(10):  # more listings must not mean more queries
        make_listing(publisher=publisher, category=category, title=f"Email helper {index}")
    anonymous = APIClient()
    # search path, keyword ids, semantic ids (in a savepoint with the HNSW settings), cards
    with django_assert_max_num_queries(7):
        found = anonymous.get(API + "listings/", {"q": "email"}).json()["results"]
    assert len(found) == 11
    with django_assert_max_num_queries(6):
        assert anonymous.get(API + f"listings/{listing}/").status_code == 200


def test_a_listing_that_is_not_public_is_a_404(
    alpha: APIClient, agent_id: int, category: Category, staff: User
) -> None:
    slug = publish(alpha, agent_id)["listing"]
    anonymous = APIClient()
    for path in ("", "versions/", "reviews/"):
        assert anonymous.get(API + f"listings/{slug}/{path}").status_code == 404  # pending
    assert anonymous.get(API + "listings/", {"q": "inbox"}).json()["results"] == []

    version = ListingVersion.objects.get(listing__slug=slug)
    services.version_reject(user=staff, version=version, reason="The summary is misleading.")
    assert anonymous.get(API + f"listings/{slug}/").status_code == 404  # rejected
    assert alpha.post(API + f"listings/{slug}/install/").status_code == 404


def test_an_unlisted_listing_disappears_but_installs_keep_working(
    world: World, listing: str, bravo: APIClient, staff: User
) -> None:
    install_id = bravo.post(API + f"listings/{listing}/install/").json()["id"]
    services.listing_unlist(
        user=staff, listing=Listing.objects.get(slug=listing), reason="Misleading claims."
    )
    anonymous = APIClient()
    for path in ("", "versions/", "reviews/"):
        assert anonymous.get(API + f"listings/{listing}/{path}").status_code == 404
    assert anonymous.get(API + "listings/", {"q": "inbox"}).json()["results"] == []
    other = key_client(world, EVERYTHING)  # alpha cannot install it any more
    assert other.post(API + f"listings/{listing}/install/").status_code == 404
    [state] = bravo.get(API + "installs/").json()["results"]  # bravo's copy stays
    assert state["id"] == install_id
    assert state["update_available"] is False


# --- Publishing


def test_publish_shows_the_decision_and_reason_to_the_creator(
    alpha: APIClient, agent_id: int, category: Category, staff: User
) -> None:
    submitted = publish(alpha, agent_id)
    assert submitted["status"] == "pending"
    assert submitted["number"] == 1
    version = ListingVersion.objects.get(listing__slug=submitted["listing"])
    services.version_request_changes(user=staff, version=version, reason="Add example inputs.")

    mine = alpha.get(API + "published/").json()["results"]
    assert len(mine) == 1
    assert mine[0]["is_public"] is False
    assert mine[0]["versions"][0]["status"] == "changes_requested"
    assert mine[0]["versions"][0]["moderation_reason"] == "Add example inputs."

    # a new version of the same listing goes through the same flow
    again = publish(alpha, agent_id, changelog="Examples added.")
    assert again["listing"] == submitted["listing"]
    assert again["number"] == 2


def test_publish_snapshot_carries_no_secrets(
    world: World, alpha: APIClient, category: Category, staff: User
) -> None:
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        credential = ProviderCredential(name="private", kind="openai_compatible")
        credential.base_url = "http://10.9.8.7:8000/v1"
        credential.set_api_key(SECRET)
        credential.save()
        aliases.alias_save(
            access=access,
            name="smart",
            targets=[
                aliases.TargetSpec(
                    kind="openai_compatible", model="llama", credential_id=credential.pk
                )
            ],
        )
        agent = agent_create(access=access, name="Leaky", model="smart", system_prompt="Be brief.")
    slug = publish(alpha, agent.pk, title="Leaky agent")["listing"]
    approve(staff, slug)
    versions = APIClient().get(API + f"listings/{slug}/versions/")
    assert versions.status_code == 200
    text = versions.content.decode()
    assert SECRET not in text
    assert "10.9.8.7" not in text
    assert versions.json()["results"][0]["definition"]["agent"]["model"] == "smart"


def test_bad_publish_input_names_the_field(
    world: World, alpha: APIClient, agent_id: int, category: Category
) -> None:
    missing = alpha.post(API + "listings/", {"kind": "agent", "source_id": agent_id}, format="json")
    assert missing.status_code == 400
    assert {"title", "summary", "category"} <= set(missing.json()["error"]["fields"])

    unknown = alpha.post(
        API + "listings/",
        {"kind": "agent", "source_id": agent_id, "title": "T", "summary": "S", "category": "nope"},
        format="json",
    )
    assert unknown.status_code == 400
    assert "category" in unknown.json()["error"]["fields"]

    # another workspace's agent id is not this workspace's agent
    bravo = key_client(world, EVERYTHING, workspace=world.workspace_b)
    foreign = bravo.post(
        API + "listings/",
        {
            "kind": "agent",
            "source_id": agent_id,
            "title": "T",
            "summary": "S",
            "category": "support",
        },
        format="json",
    )
    assert foreign.status_code == 404
    assert Listing.objects.count() == 0


def test_publish_needs_build_and_a_workspace(
    world: World, agent_id: int, category: Category
) -> None:
    reader = key_client(world, ["workspace.view"])
    body = {
        "kind": "agent",
        "source_id": agent_id,
        "title": "T",
        "summary": "S",
        "category": "support",
    }
    assert reader.post(API + "listings/", body, format="json").status_code == 403
    assert APIClient().post(API + "listings/", body, format="json").status_code == 401
    assert APIClient().get(API + "published/").status_code == 401

    # a browser session must name its workspace; an outsider's session cannot act in alpha
    session = APIClient()
    session.force_authenticate(world.owner)
    no_header = session.post(API + "listings/", body, format="json")
    assert no_header.status_code == 400
    assert "X-Workspace" in no_header.json()["error"]["fields"]
    outsider = APIClient()
    outsider.force_authenticate(world.outsider)
    wrong = outsider.post(API + "listings/", body, format="json", HTTP_X_WORKSPACE="alpha")
    assert wrong.status_code == 404
    assert Listing.objects.count() == 0


# --- Installs


def test_install_stays_pinned_until_upgraded_then_uninstalls_cleanly(
    world: World, listing: str, alpha: APIClient, bravo: APIClient, agent_id: int, staff: User
) -> None:
    installed = bravo.post(API + f"listings/{listing}/install/")
    assert installed.status_code == 201, installed.content
    install = installed.json()
    assert install["version"] == 1
    assert install["object_kind"] == "agent"
    assert bravo.post(API + f"listings/{listing}/install/").status_code == 409

    # a newer approved version: bravo sees the update but stays on 1
    publish(alpha, agent_id, changelog="Handles refunds.")
    approve(staff, listing)
    [state] = bravo.get(API + "installs/").json()["results"]
    assert state["version"] == 1
    assert state["update_available"] is True
    assert state["latest_version"] == 2
    assert state["latest_changelog"] == "Handles refunds."

    upgraded = bravo.post(API + f"installs/{install['id']}/upgrade/")
    assert upgraded.status_code == 200, upgraded.content
    assert upgraded.json()["version"] == 2
    assert upgraded.json()["update_available"] is False
    assert bravo.post(API + f"installs/{install['id']}/upgrade/").status_code == 409

    gone = bravo.post(API + f"installs/{install['id']}/uninstall/")
    assert gone.status_code == 200
    assert gone.json()["uninstalled_at"]
    assert bravo.get(API + "installs/").json()["results"] == []
    with schema_context(world.workspace_b.schema_name):
        assert Agent.objects.get(pk=install["object_id"]).archived_at is not None


def test_installs_and_published_lists_run_the_same_queries_for_more_rows(
    world: World,
    listing: str,
    alpha: APIClient,
    bravo: APIClient,
    agent_id: int,
    staff: User,
) -> None:
    def counted(client: APIClient, path: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(API + path).status_code == 200
        return len(captured.captured_queries)

    bravo.post(API + f"listings/{listing}/install/")
    before = (counted(bravo, "installs/"), counted(alpha, "published/"))
    access = access_of(world.owner, world.workspace_a)
    for index in range(4):
        with schema_context(world.workspace_a.schema_name):
            other = agent_create(access=access, name=f"Helper {index}", model="offline:demo")
        slug = publish(alpha, other.pk, title=f"Helper {index}")["listing"]
        approve(staff, slug)
        assert bravo.post(API + f"listings/{slug}/install/").status_code == 201
    publish(alpha, agent_id, changelog="A second version, pending.")
    assert len(bravo.get(API + "installs/").json()["results"]) == 5
    assert (counted(bravo, "installs/"), counted(alpha, "published/")) == before


def test_another_workspace_cannot_touch_an_install(
    world: World, listing: str, alpha: APIClient, bravo: APIClient
) -> None:
    install_id = bravo.post(API + f"listings/{listing}/install/").json()["id"]
    assert alpha.get(API + "installs/").json()["results"] == []
    assert alpha.post(API + f"installs/{install_id}/upgrade/").status_code == 404
    assert alpha.post(API + f"installs/{install_id}/uninstall/").status_code == 404
    assert len(bravo.get(API + "installs/").json()["results"]) == 1

    reader = key_client(world, ["workspace.view"], workspace=world.workspace_b)
    assert reader.post(API + f"installs/{install_id}/uninstall/").status_code == 403
    assert len(bravo.get(API + "installs/").json()["results"]) == 1


# --- Reviews, replies and flags


def test_only_a_workspace_that_ran_it_may_review_once_and_the_creator_replies_once(
    world: World, listing: str, alpha: APIClient, bravo: APIClient
) -> None:
    review = {"rating": 5, "text": "Saved us hours."}
    never_installed = bravo.post(API + f"listings/{listing}/reviews/", review, format="json")
    assert never_installed.status_code == 403
    bravo.post(API + f"listings/{listing}/install/")
    never_ran = bravo.post(API + f"listings/{listing}/reviews/", review, format="json")
    assert never_ran.status_code == 403
    assert "ran it" in never_ran.json()["error"]["message"]

    ran(world, listing)
    bad = bravo.post(API + f"listings/{listing}/reviews/", {"rating": 9}, format="json")
    assert bad.status_code == 400
    assert "rating" in bad.json()["error"]["fields"]
    first = bravo.post(API + f"listings/{listing}/reviews/", review, format="json")
    assert first.status_code == 201, first.content
    edited = bravo.post(API + f"listings/{listing}/reviews/", {"rating": 4}, format="json")
    assert edited.status_code == 200  # an edit, not a new review
    assert edited.json()["id"] == first.json()["id"]
    assert edited.json()["rating"] == 4

    public = APIClient().get(API + f"listings/{listing}/reviews/").json()["results"]
    assert [(r["rating"], r["text"]) for r in public] == [(4, "")]
    assert "workspace" not in public[0]
    assert "author" not in public[0]
    detail = APIClient().get(API + f"listings/{listing}/").json()
    assert detail["reviews"] == 1
    assert detail["rating"] == "4.00"

    review_id = first.json()["id"]
    assert (
        bravo.post(API + f"reviews/{review_id}/reply/", {"text": "Me?"}, format="json").status_code
        == 403
    )
    assert alpha.post(API + f"reviews/{review_id}/reply/", {}, format="json").status_code == 400
    replied = alpha.post(API + f"reviews/{review_id}/reply/", {"text": "Thanks!"}, format="json")
    assert replied.status_code == 200
    assert replied.json()["reply"] == "Thanks!"
    twice = alpha.post(API + f"reviews/{review_id}/reply/", {"text": "Again"}, format="json")
    assert twice.status_code == 409
    assert (
        alpha.post(API + "reviews/999999/reply/", {"text": "x"}, format="json").status_code == 404
    )


def test_flags_need_an_account_and_a_reason(world: World, listing: str, bravo: APIClient) -> None:
    assert (
        APIClient()
        .post(API + f"listings/{listing}/flags/", {"reason": "spam"}, format="json")
        .status_code
        == 401
    )
    other = bravo.post(API + f"listings/{listing}/flags/", {"reason": "other"}, format="json")
    assert other.status_code == 400
    assert "details" in other.json()["error"]["fields"]
    bad = bravo.post(API + f"listings/{listing}/flags/", {"reason": "ugly"}, format="json")
    assert bad.status_code == 400
    assert "reason" in bad.json()["error"]["fields"]

    made = bravo.post(
        API + f"listings/{listing}/flags/",
        {"reason": "other", "details": "Asks for passwords."},
        format="json",
    )
    assert made.status_code == 201, made.content
    flag = Flag.objects.get()
    assert flag.details == "Asks for passwords."
    assert flag.reporter == world.outsider


def test_a_session_user_reads_and_acts_with_the_workspace_header(
    world: World, listing: str
) -> None:
    client = logged_in(world.outsider)
    assert client.get(API + f"listings/{listing}/").status_code == 200
    installed = client.post(API + f"listings/{listing}/install/", HTTP_X_WORKSPACE="bravo")
    assert installed.status_code == 201, installed.content
    assert json.loads(client.get(API + "installs/", HTTP_X_WORKSPACE="bravo").content)["results"]
    assert client.get(API + "installs/", HTTP_X_WORKSPACE="alpha").status_code == 404


# --- Schema


def _routes(patterns: list[Any]) -> list[URLPattern]:
    found: list[URLPattern] = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found.extend(_routes(pattern.url_patterns))
        else:
            found.append(pattern)
    return found


def test_every_marketplace_endpoint_is_in_the_openapi_schema(world: World) -> None:
    schema = APIClient().get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for pattern in _routes(api_urls.urlpatterns):
        route = "/api/v1/" + str(pattern.pattern)
        for converter in ("int:", "slug:", "str:"):
            route = route.replace("<" + converter, "{")
        route = route.replace(">", "}")
        assert route in paths, route
        view = pattern.callback.view_class
        methods = {m for m in ("get", "post", "patch", "put", "delete") if hasattr(view, m)}
        assert methods <= set(paths[route]), (route, methods)
        for method in methods:
            assert paths[route][method]["operationId"], route
    install = paths["/api/v1/marketplace/listings/{slug}/install/"]["post"]
    assert "X-Workspace" in {p["name"] for p in install["parameters"] if p["in"] == "header"}
    # Reading is open to anyone (an empty security requirement); writing is not.
    for route in ("listings/", "listings/{slug}/", "listings/{slug}/versions/"):
        assert {} in paths["/api/v1/marketplace/" + route]["get"]["security"], route
    assert {} not in paths["/api/v1/marketplace/listings/"]["post"]["security"]
    review = paths["/api/v1/marketplace/listings/{slug}/reviews/"]
    assert {} in review["get"]["security"]
    assert {"200", "201"} <= set(review["post"]["responses"])
