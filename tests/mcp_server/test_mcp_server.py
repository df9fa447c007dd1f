"""The workspace MCP endpoint, driven by the official `mcp` client over Streamable HTTP
against the whole ASGI application on a loopback port, with a real Celery worker."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from django_tenants.utils import schema_context
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from agents import services as agent_services
from agents.models import Agent, AgentRun
from tenants import services as tenant_services
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.django_db(transaction=True)


def _key(world: World, scopes: list[str], *, workspace_b: bool = False) -> str:
    workspace = world.workspace_b if workspace_b else world.workspace_a
    owner = world.outsider if workspace_b else world.owner
    _, secret = tenant_services.api_key_create(
        access=access_of(owner, workspace), name="mcp", scopes=scopes
    )
    return secret


def _agent(world: World, name: str, *, exposed: bool) -> Agent:
    with schema_context(world.workspace_a.schema_name):
        return agent_services.agent_create(
            access=access_of(world.owner, world.workspace_a),
            name=name,
            description=f"{name} answers questions.",
            mcp_exposed=exposed,
            model="offline:demo",
        )


def _url(server: SimpleNamespace, slug: str = "alpha") -> str:
    return f"{server.url}/mcp/w/{slug}/"


async def _session(url: str, secret: str, body: Any) -> Any:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {secret}"})
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        return await body(client)


def test_an_mcp_client_lists_the_exposed_agents_and_calls_one_as_an_ordinary_run(
    committed_world: World, worker_queue: str, asgi_live_server: SimpleNamespace
) -> None:
    shown = _agent(committed_world, "Support Helper", exposed=True)
    _agent(committed_world, "Internal Only", exposed=False)
    secret = _key(committed_world, ["run"])

    async def body(client: Client) -> tuple[list[types.Tool], types.CallToolResult]:
        tools = (await client.list_tools()).tools
        result = await client.call_tool(tools[0].name, {"input": "How long do refunds take?"})
        return tools, result

    tools, result = anyio.run(_session, _url(asgi_live_server), secret, body)

    assert [t.name for t in tools] == [f"agent_{shown.pk}_support_helper"]
    assert tools[0].title == "Support Helper"
    assert tools[0].description == "Support Helper answers questions."
    assert tools[0].input_schema["required"] == ["input"]
    assert result.is_error is False
    with schema_context(committed_world.workspace_a.schema_name):
        run = AgentRun.objects.get()
    assert run.agent_id == shown.pk
    assert run.status == AgentRun.Status.SUCCEEDED
    assert run.input == "How long do refunds take?"
    assert run.api_key_prefix  # the key that called is on the run, like a REST call
    assert [c.text for c in result.content if isinstance(c, types.TextContent)] == [run.output]
    assert run.output.startswith("[offline model]")


def test_a_hidden_or_unknown_tool_and_bad_arguments_are_tool_errors_and_start_nothing(
    committed_world: World, asgi_live_server: SimpleNamespace
) -> None:
    hidden = _agent(committed_world, "Internal Only", exposed=False)
    secret = _key(committed_world, ["run"])

    async def body(client: Client) -> list[types.CallToolResult]:
        return [
            await client.call_tool(f"agent_{hidden.pk}_internal_only", {"input": "hi"}),
            await client.call_tool("no_such_tool", {"input": "hi"}),
        ]

    results = anyio.run(_session, _url(asgi_live_server), secret, body)

    assert all(r.is_error for r in results)
    texts = [r.content[0].text for r in results if isinstance(r.content[0], types.TextContent)]
    assert texts == [
        f"No tool named 'agent_{hidden.pk}_internal_only' in this workspace.",
        "No tool named 'no_such_tool' in this workspace.",
    ]
    with schema_context(committed_world.workspace_a.schema_name):
        assert not AgentRun.objects.exists()


def _post(url: str, headers: dict[str, str]) -> httpx2.Response:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {},
    }
    return httpx2.post(
        url,
        json=initialize,
        headers={"Accept": "application/json, text/event-stream", **headers},
    )


def test_anonymous_wrong_keys_another_workspace_and_missing_scope_are_refused(
    committed_world: World, asgi_live_server: SimpleNamespace
) -> None:
    _agent(committed_world, "Support Helper", exposed=True)
    url = _url(asgi_live_server)
    viewer_like = _key(committed_world, ["workspace.view"])  # a key without the run scope
    bravo = _key(committed_world, ["run"], workspace_b=True)

    anonymous = _post(url, {})
    wrong = _post(url, {"Authorization": "Bearer amk_nope_nope"})
    malformed = _post(url, {"Authorization": "Basic Zm9vOmJhcg=="})
    other = _post(url, {"Authorization": f"Bearer {bravo}"})
    unscoped = _post(url, {"Authorization": f"Bearer {viewer_like}"})
    no_such = _post(_url(asgi_live_server, "nowhere"), {"Authorization": f"Bearer {bravo}"})

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="mcp"'
    assert "API key is required" in anonymous.json()["error"]["message"]
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "Unknown API key."
    assert malformed.status_code == 401
    assert other.status_code == 404  # alpha's endpoint does not exist for bravo's key
    assert no_such.status_code == 404
    assert unscoped.status_code == 403
    assert "'run' scope" in unscoped.json()["error"]["message"]
    with schema_context(committed_world.workspace_a.schema_name):
        assert not AgentRun.objects.exists()
