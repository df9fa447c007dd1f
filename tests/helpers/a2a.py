"""A2A in tests: an exposed agent, API keys, and the official `a2a-sdk` client against the
live ASGI server (`asgi_live_server`)."""

from __future__ import annotations

from typing import Any

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.client.client import Client
from a2a.types import AgentCard, Message, Part, Role, SendMessageRequest
from django_tenants.utils import schema_context

from accounts.models import User
from agents import services as agent_services
from agents.models import Agent
from marketplace import services as marketplace_services
from marketplace.models import Category, Listing
from tenants import services as tenant_services
from tenants.models import Workspace
from tests.helpers.personas import World, access_of

CARD = ".well-known/agent-card.json"


def make_agent(world: World, *, exposed: bool = True, name: str = "Calculator") -> Agent:
    """An agent of workspace alpha on the offline model (it uses its calculator)."""
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent = agent_services.agent_create(
            access=access,
            name=name,
            description="Answers arithmetic questions.",
            category="math",
            model="offline:demo",
            tools=["calculator"],
        )
        if exposed:
            Agent.objects.filter(pk=agent.pk).update(a2a_exposed=True)
            agent.refresh_from_db()
    return agent


def make_key(
    world: World, *, workspace: Workspace | None = None, scopes: list[str] | None = None
) -> str:
    workspace = workspace or world.workspace_a
    owner = world.owner if workspace == world.workspace_a else world.outsider
    _, secret = tenant_services.api_key_create(
        access=access_of(owner, workspace), name="a2a", scopes=scopes or ["run"]
    )
    return secret


def agent_url(base_url: str, workspace: Workspace, agent_id: int) -> str:
    return f"{base_url}/a2a/w/{workspace.slug}/agents/{agent_id}/"


def http(secret: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.AsyncClient(headers=headers, timeout=60)


async def card_of(client: httpx.AsyncClient, url: str) -> AgentCard:
    return await A2ACardResolver(client, url).get_agent_card(CARD)


def a2a_client(client: httpx.AsyncClient, card: AgentCard, *, streaming: bool) -> Client:
    return ClientFactory(ClientConfig(httpx_client=client, streaming=streaming)).create(card)


def ask(text: str, **configuration: Any) -> SendMessageRequest:
    request = SendMessageRequest(
        message=Message(message_id="m-1", role=Role.ROLE_USER, parts=[Part(text=text)])
    )
    for field, value in configuration.items():
        setattr(request.configuration, field, value)
    return request


def published_listing(world: World, *, slug: str = "calc-agent") -> Listing:
    """Alpha's calculator agent published (approved) as a public agent listing."""
    Category.objects.get_or_create(slug="support", defaults={"name": "Support"})
    source = make_agent(world, exposed=False, name="Listed calculator")
    version = marketplace_services.listing_publish(
        access=access_of(world.owner, world.workspace_a),
        kind="agent",
        source_id=source.pk,
        title="Calculator for hire",
        summary="Does sums.",
        category_slug="support",
        tags=["Math"],
    )
    Listing.objects.filter(pk=version.listing_id).update(slug=slug)
    staff = User.objects.filter(email="mod@platform.test").first() or User.objects.create_superuser(
        email="mod@platform.test", password="x"
    )
    marketplace_services.version_approve(user=staff, version=version)
    return Listing.objects.get(pk=version.listing_id)
