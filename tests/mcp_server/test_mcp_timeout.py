"""An MCP tool call whose run (an agent's or a workflow's) outlasts the wait (no worker in this
module: the run stays queued) answers a clear tool error naming the run, which goes on."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import anyio
import mcp_types as types
import pytest
from django_tenants.utils import schema_context
from mcp import Client

from agents.models import AgentRun
from tests.helpers.personas import World, access_of
from tests.helpers.workflows import flow, transform
from tests.mcp_server.test_mcp_server import _agent, _key, _session, _url
from workflows import services
from workflows.models import WorkflowRun

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_run_that_outlasts_the_wait_is_a_clear_tool_error_naming_the_run(
    committed_world: World, asgi_live_server: SimpleNamespace, settings: Any
) -> None:
    settings.MCP_TOOL_TIMEOUT_SECONDS = 0.2  # and no worker: the run stays queued
    agent = _agent(committed_world, "Support Helper", exposed=True)
    secret = _key(committed_world, ["run"])

    async def body(client: Client) -> types.CallToolResult:
        return await client.call_tool(f"agent_{agent.pk}_support_helper", {"input": "Hi"})

    result = anyio.run(_session, _url(asgi_live_server), secret, body)

    with schema_context(committed_world.workspace_a.schema_name):
        run = AgentRun.objects.get()
    assert result.is_error
    assert isinstance(result.content[0], types.TextContent)
    assert result.content[0].text == (
        f"Run {run.pk} is still queued after 0.2 s; it goes on: follow it with "
        f"GET /api/v1/agents/{agent.pk}/runs/{run.pk}/."
    )


def test_guessing_keys_on_the_mcp_endpoint_is_throttled_like_the_api(
    committed_world: World, asgi_live_server: SimpleNamespace, settings: Any
) -> None:
    import httpx2

    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth_failure": "2/min"}
    # Behind one proxy, from an address of its own (failure counts live in Redis across tests).
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": rates,
        "NUM_PROXIES": 1,
    }
    secret = _key(committed_world, ["run"])
    headers = {
        "Accept": "application/json, text/event-stream",
        "X-Forwarded-For": f"10.99.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}",
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}

    def post(key: str) -> httpx2.Response:
        return httpx2.post(
            _url(asgi_live_server),
            json=body,
            headers={**headers, "Authorization": f"Bearer {key}"},
        )

    statuses = [post("amk_nope_nope").status_code for _ in range(3)]
    blocked = post(secret)  # even a good key, from this address, until the window passes

    assert statuses == [401, 401, 429]
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert "Too many failed API-key attempts" in blocked.json()["error"]["message"]


def test_a_host_header_outside_allowed_hosts_is_refused_as_django_would(
    committed_world: World, asgi_live_server: SimpleNamespace
) -> None:
    import httpx2

    secret = _key(committed_world, ["run"])
    response = httpx2.post(
        _url(asgi_live_server),
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
        headers={
            "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {secret}",
            "Host": "evil.example",
        },
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Invalid Host header."


def test_a_workflow_run_that_outlasts_the_wait_names_the_run_to_follow(
    committed_world: World, asgi_live_server: SimpleNamespace, settings: Any
) -> None:
    settings.MCP_TOOL_TIMEOUT_SECONDS = 0.2  # and no worker: the run stays queued
    access = access_of(committed_world.owner, committed_world.workspace_a)
    with schema_context(committed_world.workspace_a.schema_name):
        workflow = services.workflow_create(
            access=access, name="Slow", definition=flow([transform("a", "done")], [])
        )
        services.workflow_update(
            access=access,
            workflow=workflow,
            name="Slow",
            description="",
            category="",
            mcp_exposed=True,
        )
    secret = _key(committed_world, ["run"])

    async def body(client: Client) -> types.CallToolResult:
        return await client.call_tool(f"workflow_{workflow.pk}_slow", {})

    result = anyio.run(_session, _url(asgi_live_server), secret, body)

    with schema_context(committed_world.workspace_a.schema_name):
        run = WorkflowRun.objects.get()
    assert result.is_error
    assert isinstance(result.content[0], types.TextContent)
    assert result.content[0].text == (
        f"Run {run.pk} is still queued after 0.2 s; it goes on: follow it with "
        f"GET /api/v1/workflows/runs/{run.pk}/."
    )
