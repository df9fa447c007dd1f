"""The overview page's agents card: counts of this workspace only, an empty state, and nothing
for people outside the workspace."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents.models import Conversation
from agents.services import agent_create
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def _url(name: str, slug: str = "alpha") -> str:
    return reverse(name, kwargs={"workspace_slug": slug})


def test_the_dashboard_loads_the_agents_card_which_counts_this_workspace_only(
    world: World, owner_client: Client
) -> None:
    dashboard = owner_client.get(_url("workspace_dashboard")).content.decode()
    assert _url("agent_dashboard_card") in dashboard

    empty = owner_client.get(_url("agent_dashboard_card"), **HX).content.decode()
    assert "No agents yet" in empty
    assert "Build an agent" in empty

    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(
            access=access_of(world.owner, world.workspace_a), name="Helper", model="offline:demo"
        )
        Conversation.objects.create(agent=agent, created_by_id=world.owner.pk)
    with schema_context(world.workspace_b.schema_name):
        for name in ("One", "Two"):
            agent_create(
                access=access_of(world.outsider, world.workspace_b), name=name, model="offline:demo"
            )

    card = owner_client.get(_url("agent_dashboard_card"), **HX).content.decode()
    assert "1 agent · 1 conversation" in card
    assert "No agents yet" not in card


def test_outsiders_get_no_agents_card(world: World, outsider_client: Client) -> None:
    assert outsider_client.get(_url("agent_dashboard_card"), **HX).status_code == 404
