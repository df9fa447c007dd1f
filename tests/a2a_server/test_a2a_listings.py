"""A published agent listing's A2A card is public; its endpoint runs the caller's installed
copy, with the key of the workspace that installed it (decision 117). No worker here: the
task is read while it is still submitted."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from a2a.types import TaskState
from a2a.utils.errors import InvalidParamsError
from django_tenants.utils import schema_context

from agents.models import AgentRun, Conversation
from marketplace import services as marketplace_services
from tests.helpers.a2a import (
    CARD,
    a2a_client,
    agent_url,
    ask,
    card_of,
    http,
    make_agent,
    make_key,
    published_listing,
)
from tests.helpers.personas import World, access_of


def _get(url: str, secret: str | None = None) -> httpx.Response:
    async def call() -> httpx.Response:
        async with http(secret) as client:
            return await client.get(url)

    return asyncio.run(call())


def test_a_listing_card_is_public_and_its_endpoint_runs_the_buyers_installed_copy(
    committed_world: World, asgi_live_server: Any
) -> None:
    listing = published_listing(committed_world)
    url = f"{asgi_live_server.url}/a2a/listings/{listing.slug}/"
    anonymous = _get(url + CARD)
    assert anonymous.status_code == 200
    card = anonymous.json()
    assert card["name"] == "Calculator for hire"
    assert card["supportedInterfaces"][0]["url"] == url
    assert card["documentationUrl"].endswith(f"/marketplace/l/{listing.slug}/")
    assert _get(f"{asgi_live_server.url}/a2a/listings/no-such/{CARD}").status_code == 404

    async def spoofed() -> int:
        async with http() as client:
            response = await client.get(url + CARD, headers={"Host": "evil.example"})
            return response.status_code

    assert asyncio.run(spoofed()) == 400  # ALLOWED_HOSTS, as Django checks it

    buyer_secret = make_key(committed_world, workspace=committed_world.workspace_b)

    async def send(secret: str) -> Any:
        async with http(secret) as client:
            a2a = a2a_client(client, await card_of(client, url), streaming=False)
            request = ask("What is 6 * 7?", return_immediately=True)
            [response] = [event async for event in a2a.send_message(request)]
            return response.task

    async def status(secret: str | None) -> httpx.Response:
        async with http(secret) as client:
            return await client.post(
                url,
                json={"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "1"}},
            )

    # Not installed yet: the endpoint says to install it.
    refused = asyncio.run(status(buyer_secret))
    assert refused.status_code == 404
    assert "install it" in refused.json()["error"]["message"]
    assert asyncio.run(status(None)).status_code == 401

    installed = marketplace_services.install(
        access=access_of(committed_world.outsider, committed_world.workspace_b), listing=listing
    )
    task = asyncio.run(send(buyer_secret))
    assert task.status.state == TaskState.TASK_STATE_SUBMITTED
    with schema_context(committed_world.workspace_b.schema_name):
        run = AgentRun.objects.get(pk=int(task.id))
    assert run.agent_id == installed.object_id  # bravo's copy, in bravo's schema


def test_a_listing_context_continues_in_the_buyers_copy_and_nowhere_else(
    committed_world: World, asgi_live_server: Any
) -> None:
    """Contexts through a listing's endpoint are conversations of the caller's installed copy;
    its context id means nothing at the publisher's own agent (decision 125)."""
    listing = published_listing(committed_world)
    url = f"{asgi_live_server.url}/a2a/listings/{listing.slug}/"
    installed = marketplace_services.install(
        access=access_of(committed_world.outsider, committed_world.workspace_b), listing=listing
    )
    buyer_secret = make_key(committed_world, workspace=committed_world.workspace_b)
    publisher_agent = make_agent(committed_world, name="Publisher's own")
    publisher_url = agent_url(asgi_live_server.url, committed_world.workspace_a, publisher_agent.pk)
    publisher_secret = make_key(committed_world)

    async def send(to: str, secret: str, context_id: str = "") -> Any:
        async with http(secret) as client:
            a2a = a2a_client(client, await card_of(client, to), streaming=False)
            request = ask("What is 6 * 7?", return_immediately=True)
            request.message.context_id = context_id
            [response] = [event async for event in a2a.send_message(request)]
            return response.task

    first = asyncio.run(send(url, buyer_secret))
    assert first.context_id.startswith("ctx-")
    with schema_context(committed_world.workspace_b.schema_name):
        AgentRun.objects.filter(pk=int(first.id)).update(status=AgentRun.Status.SUCCEEDED)
    second = asyncio.run(send(url, buyer_secret, first.context_id))
    assert second.context_id == first.context_id
    with schema_context(committed_world.workspace_b.schema_name):
        runs = list(AgentRun.objects.filter(pk__in=[int(first.id), int(second.id)]))
        assert {run.agent_id for run in runs} == {installed.object_id}
        assert len({run.conversation_id for run in runs}) == 1
        assert Conversation.objects.get().context_id == first.context_id

    with pytest.raises(InvalidParamsError, match="contextId"):
        asyncio.run(send(publisher_url, publisher_secret, first.context_id))
    with schema_context(committed_world.workspace_a.schema_name):
        assert not AgentRun.objects.filter(agent=publisher_agent).exists()
