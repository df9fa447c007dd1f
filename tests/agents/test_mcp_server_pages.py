"""The MCP servers page: owners connect, refresh and remove; the credential is never shown
back; viewers and members are refused, outsiders get 404 and anonymous visitors sign in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents.models import Agent, AllowedHost, McpServerConnection
from tenants.models import Membership, Role
from tests.fakes.mcp_remote import FakeMcpServer, fake_mcp_server
from tests.helpers.personas import World, logged_in, make_user

pytestmark = pytest.mark.django_db

SECRET = "tok-very-secret-9876"


def _url(name: str = "mcp_connections", slug: str = "alpha", **kwargs: int) -> str:
    return reverse(name, kwargs={"workspace_slug": slug, **kwargs})


@pytest.fixture
def remote(world: World, settings: Any) -> Iterator[FakeMcpServer]:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    with schema_context(world.workspace_a.schema_name):
        AllowedHost.objects.create(host="127.0.0.1")
    with fake_mcp_server() as fake:
        yield fake


def test_an_owner_connects_a_server_and_sees_its_tools_but_never_the_credential(
    world: World, owner_client: Client, remote: FakeMcpServer
) -> None:
    empty = owner_client.get(_url())
    assert "No MCP servers yet" in empty.content.decode()

    form = {"name": "remote", "url": remote.url, "header_name": "X-Token", "credential": SECRET}
    response = owner_client.post(_url(), form, follow=True)

    page = response.content.decode()
    assert "remote connected: 3 tool(s)." in page
    assert "Left out: &#x27;bad_schema&#x27;" in page
    assert "mcp__remote__add" in page
    assert SECRET not in page
    assert remote.authorizations == [""] * len(remote.authorizations)  # X-Token, not Bearer
    with schema_context(world.workspace_a.schema_name):
        connection = McpServerConnection.objects.get()
    assert (
        owner_client.post(_url("mcp_connection_refresh", connection_id=connection.pk)).status_code
        == 302
    )
    assert (
        owner_client.post(_url("mcp_connection_delete", connection_id=connection.pk)).status_code
        == 302
    )
    with schema_context(world.workspace_a.schema_name):
        assert not McpServerConnection.objects.exists()


def test_a_host_not_on_the_allowlist_is_shown_beside_the_url(
    world: World, owner_client: Client, settings: Any
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    response = owner_client.post(_url(), {"name": "x", "url": "http://127.0.0.1:9/mcp"})
    assert response.status_code == 400
    assert "allows no hosts yet" in response.content.decode()


def test_viewers_members_outsiders_and_anonymous_visitors_are_refused(
    world: World, outsider_client: Client, member_client: Client, client: Client
) -> None:
    with schema_context(world.workspace_a.schema_name):
        connection = McpServerConnection.objects.create(name="remote", url="https://x.test/mcp")
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    routes = [
        ("get", _url()),
        ("post", _url()),
        ("post", _url("mcp_connection_refresh", connection_id=connection.pk)),
        ("post", _url("mcp_connection_delete", connection_id=connection.pk)),
    ]
    for method, url in routes:
        assert getattr(logged_in(viewer), method)(url).status_code == 403
        assert getattr(member_client, method)(url).status_code == 403
        assert getattr(outsider_client, method)(url).status_code == 404
        assert getattr(client, method)(url).status_code == 302  # to sign in
    with schema_context(world.workspace_a.schema_name):
        assert McpServerConnection.objects.exists()


def test_the_agent_form_offers_the_connected_tools(
    world: World, owner_client: Client, remote: FakeMcpServer
) -> None:
    owner_client.post(_url(), {"name": "remote", "url": remote.url})
    assert "mcp__remote__add" in owner_client.get(_url("agent_create")).content.decode()

    form = {
        "name": "Adder",
        "model": "offline:demo",
        "max_tokens": 512,
        "max_tool_calls": 4,
        "tools": ["calculator", "mcp__remote__add"],
    }
    assert owner_client.post(_url("agent_create"), form).status_code == 302
    with schema_context(world.workspace_a.schema_name):
        agent = Agent.objects.get(name="Adder")
        assert agent.current_version is not None
        assert agent.current_version.tools == ["calculator", "mcp__remote__add"]
