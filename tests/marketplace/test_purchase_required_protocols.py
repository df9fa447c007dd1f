"""A copy of a paid listing without a purchase is refused on every protocol that starts a run,
before anything runs: the REST API (agent and workflow runs: 402 `purchase_required`), an
inbound workflow webhook (402), an MCP tool call (a tool error with the message) and an A2A
SendMessage (a JSON-RPC invalid-params error whose data carries `purchase_required`). No run
exists afterwards."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from a2a.utils.errors import InvalidParamsError
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context
from mcp import Client as McpClient
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from agents.models import Agent, AgentRun
from agents.services import agent_create
from agents.webhooks import SIGNATURE_HEADER, sign
from marketplace.models import Category, Listing, Publisher
from tests.fakes import FakeStripe
from tests.helpers.a2a import a2a_client, agent_url, ask, card_of, http, make_key
from tests.helpers.marketplace import make_listing
from tests.helpers.personas import World, access_of, key_client
from tests.helpers.workflows import flow, make_workflow, transform
from workflows import triggers
from workflows.models import Workflow, WorkflowRun

REFUSAL = "is a paid listing ($9.00 a month) and this workspace has no active purchase of it"


def _paid(publisher: Publisher, categories: dict[str, Category], kind: str) -> Listing:
    listing = make_listing(
        publisher=publisher,
        category=categories["support"],
        title=f"Paid {kind}",
        kind=kind,
        pricing="monthly",
        price_cents=900,
        index=False,
    )
    assert listing.current_version is not None
    type(listing.current_version).objects.filter(pk=listing.current_version.pk).update(
        pricing="monthly", price_cents=900
    )
    return listing


def _agent_copy(world: World, listing: Listing) -> Agent:
    """Alpha's copy of `listing`, exposed over MCP and A2A; alpha has bought nothing."""
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(
            access=access_of(world.owner, world.workspace_a),
            name="Support Helper",
            description="Answers questions.",
            model="offline:demo",
        )
        Agent.objects.filter(pk=agent.pk).update(
            listing_version_id=listing.current_version_id, mcp_exposed=True, a2a_exposed=True
        )
        agent.refresh_from_db()
        return agent


def _workflow_copy(world: World, listing: Listing) -> Workflow:
    with schema_context(world.workspace_a.schema_name):
        workflow = make_workflow(flow([transform("a", 1)], []))
        workflow.listing_version_id = listing.current_version_id
        workflow.save(update_fields=["listing_version_id"])
        return workflow


def _no_runs(world: World) -> None:
    with schema_context(world.workspace_a.schema_name):
        assert not AgentRun.objects.exists()
        assert not WorkflowRun.objects.exists()


@pytest.mark.django_db
def test_the_rest_api_refuses_agent_and_workflow_runs_of_an_unbought_copy_with_402(
    world: World, fake_stripe: FakeStripe, publisher: Publisher, categories: dict[str, Category]
) -> None:
    agent = _agent_copy(world, _paid(publisher, categories, "agent"))
    workflow = _workflow_copy(world, _paid(publisher, categories, "workflow"))
    api = key_client(world, ["run", "workspace.view"])

    agent_run = api.post(f"/api/v1/agents/{agent.pk}/runs/", {"input": "Hi"}, format="json")
    workflow_run = api.post(f"/api/v1/workflows/{workflow.pk}/runs/", {"inputs": {}}, format="json")

    for answer, title in ((agent_run, "Paid agent"), (workflow_run, "Paid workflow")):
        assert answer.status_code == 402
        error = answer.json()["error"]
        assert error["code"] == "purchase_required"
        assert f"“{title}” {REFUSAL}" in error["message"]
    _no_runs(world)


@pytest.mark.django_db
def test_an_inbound_webhook_for_an_unbought_workflow_copy_is_refused_with_402(
    world: World, fake_stripe: FakeStripe, publisher: Publisher, categories: dict[str, Category]
) -> None:
    workflow = _workflow_copy(world, _paid(publisher, categories, "workflow"))
    with schema_context(world.workspace_a.schema_name):
        trigger, secret = triggers.webhook_trigger_create(
            access=access_of(world.owner, world.workspace_a), workflow=workflow, name="CRM"
        )
    body = json.dumps({"lead": "Ann"}).encode()
    header = "HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_")

    answer = Client().post(
        reverse("workflow_hook_trigger", kwargs={"workspace": "alpha", "token": trigger.token}),
        body,
        content_type="application/json",
        **{header: sign(secret, int(time.time()), body)},
    )

    assert answer.status_code == 402
    assert answer.json()["error"]["code"] == "purchase_required"
    assert REFUSAL in answer.json()["error"]["message"]
    _no_runs(world)


def test_an_mcp_tool_call_of_an_unbought_copy_is_a_tool_error_and_runs_nothing(
    committed_world: World,
    asgi_live_server: SimpleNamespace,
    fake_stripe: FakeStripe,
    publisher: Publisher,
    categories: dict[str, Category],
) -> None:
    agent = _agent_copy(committed_world, _paid(publisher, categories, "agent"))
    secret = make_key(committed_world)

    async def call() -> Any:
        client = create_mcp_http_client(headers={"Authorization": f"Bearer {secret}"})
        url = f"{asgi_live_server.url}/mcp/w/alpha/"
        async with client, McpClient(streamable_http_client(url, http_client=client)) as mcp:
            return await mcp.call_tool(f"agent_{agent.pk}_support_helper", {"input": "Hi"})

    result = anyio.run(call)

    assert result.is_error is True
    assert f"“Paid agent” {REFUSAL}" in result.content[0].text
    _no_runs(committed_world)


def test_an_a2a_message_to_an_unbought_copy_is_a_json_rpc_error_and_runs_nothing(
    committed_world: World,
    asgi_live_server: Any,
    fake_stripe: FakeStripe,
    publisher: Publisher,
    categories: dict[str, Category],
) -> None:
    agent = _agent_copy(committed_world, _paid(publisher, categories, "agent"))
    secret = make_key(committed_world)
    url = agent_url(asgi_live_server.url, committed_world.workspace_a, agent.pk)

    async def send() -> list[Any]:
        async with http(secret) as client:
            a2a = a2a_client(client, await card_of(client, url), streaming=False)
            return [event async for event in a2a.send_message(ask("Hi"))]

    with pytest.raises(InvalidParamsError, match="is a paid listing") as refused:
        asyncio.run(send())

    assert refused.value.data["code"] == "purchase_required"
    _no_runs(committed_world)
