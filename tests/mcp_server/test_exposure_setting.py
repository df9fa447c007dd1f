"""Owners choose, on the agent's settings page, whether it is an MCP tool (default: not)."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents import services
from agents.models import Agent
from tenants.models import Membership, Role
from tests.helpers.personas import World, access_of, logged_in, make_user

pytestmark = pytest.mark.django_db

FORM = {"name": "Existing", "model": "offline:demo", "max_tokens": 512, "max_tool_calls": 4}


def _url(agent: Agent, slug: str = "alpha") -> str:
    return reverse("agent_detail", kwargs={"workspace_slug": slug, "agent_id": agent.pk})


@pytest.fixture
def agent(world: World) -> Agent:
    with schema_context(world.workspace_a.schema_name):
        return services.agent_create(
            access=access_of(world.owner, world.workspace_a), name="Existing", model="offline:demo"
        )


def _exposed(world: World, agent: Agent) -> bool:
    with schema_context(world.workspace_a.schema_name):
        return Agent.objects.get(pk=agent.pk).mcp_exposed


def test_an_agent_is_not_an_mcp_tool_until_its_owner_ticks_the_box_and_can_untick_it(
    world: World, agent: Agent, owner_client: Client
) -> None:
    page = owner_client.get(_url(agent)).content.decode()
    assert "Offer as an MCP tool" in page
    assert 'name="mcp_exposed"' in page
    assert not _exposed(world, agent)

    assert owner_client.post(_url(agent), {**FORM, "mcp_exposed": "on"}).status_code == 302
    assert _exposed(world, agent)
    page = owner_client.get(_url(agent)).content.decode()
    assert re.search(r'<input type="checkbox" name="mcp_exposed"[^>]* checked', page)

    owner_client.post(_url(agent), FORM)  # an unticked box is not sent
    assert not _exposed(world, agent)


def test_a_viewer_cannot_expose_an_agent_and_an_outsider_cannot_see_it(
    world: World, agent: Agent, outsider_client: Client, client: Client
) -> None:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    refused = logged_in(viewer).post(_url(agent), {**FORM, "mcp_exposed": "on"})
    outsider = outsider_client.post(_url(agent), {**FORM, "mcp_exposed": "on"})
    anonymous = client.post(_url(agent), {**FORM, "mcp_exposed": "on"})

    assert refused.status_code == 403
    assert outsider.status_code == 404
    assert anonymous.status_code == 302  # to sign in
    assert not _exposed(world, agent)
