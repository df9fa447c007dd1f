"""A user in many workspaces: the switcher, the workspace list, the landing redirect and the
API cost the same whether the user belongs to 3 workspaces or 300 (memberships are rows; the
schemas are not needed for these pages)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import User
from tenants.models import Membership, Role, Workspace
from tenants.selectors import SWITCHER_SIZE
from tests.helpers.personas import World, logged_in

pytestmark = pytest.mark.django_db


def _join(user: User, count: int) -> None:
    """`count` more workspaces for `user` (rows only: the pages below never open them)."""
    start = Workspace.objects.count()
    workspaces = Workspace.objects.bulk_create(
        Workspace(
            schema_name=f"ws_many_{start + i}",
            name=f"Team {start + i:04d}",
            slug=f"team-{start + i:04d}",
        )
        for i in range(count)
    )
    Membership.objects.bulk_create(
        Membership(user=user, workspace=workspace, role=Role.MEMBER) for workspace in workspaces
    )


def _queries(client: Client, url: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured), response.content.decode()


def test_a_workspace_page_costs_the_same_with_300_or_600_workspaces(world: World) -> None:
    client = logged_in(world.owner)
    _join(world.owner, 2)
    client.get("/w/alpha/")  # per-process caches warm up on the first page
    few, html = _queries(client, "/w/alpha/")
    assert "All workspaces" in html
    assert "All 3 workspaces" not in html
    _join(world.owner, 297)
    many, html = _queries(client, "/w/alpha/")
    assert many <= few + 1  # past SWITCHER_SIZE, one count query
    assert html.count('class="dropdown__item" href="/w/') == SWITCHER_SIZE
    assert "All 300 workspaces · find one" in html
    _join(world.owner, 300)
    assert _queries(client, "/w/alpha/")[0] == many


def test_the_workspace_list_is_paged_and_searchable(world: World) -> None:
    _join(world.owner, 60)
    client = logged_in(world.owner)
    first, html = _queries(client, "/workspaces/")
    assert "Page 1 of 3 · 61 workspaces" in html
    assert html.count("workspace-card__name") == 24
    last, html = _queries(client, "/workspaces/?page=3")
    assert last == first
    assert html.count("workspace-card__name") == 13
    _, html = _queries(client, "/workspaces/?q=team-0042")
    assert html.count("workspace-card__name") == 1
    assert "Team 0042" in html
    _, html = _queries(client, "/workspaces/?q=nothing-like-it")
    assert "No workspace matches" in html


def test_signing_in_lands_on_the_last_workspace_without_listing_them_all(world: World) -> None:
    _join(world.owner, 100)
    client = logged_in(world.owner)
    session = client.session
    session["last_workspace"] = "alpha"
    session.save()
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/go/")
    assert response.status_code == 302
    assert response["Location"] == "/w/alpha/"
    assert len(captured) < 10


def test_the_api_pages_and_searches_workspaces(world: World) -> None:
    _join(world.owner, 120)
    api = APIClient()
    api.force_login(world.owner)
    body = api.get("/api/v1/workspaces/?limit=50").json()
    assert body["count"] == 121
    assert len(body["results"]) == 50
    assert body["next"]
    found = api.get("/api/v1/workspaces/?q=Team 0100").json()
    assert [row["slug"] for row in found["results"]] == ["team-0100"]
