"""The owner's A2A switch on an agent's page: owners and admins turn it on and off; members
and viewers see the state only; outsiders and anonymous visitors reach nothing."""

from __future__ import annotations

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from accounts.models import User
from agents.models import Agent
from tenants.models import Membership, Role
from tests.helpers.a2a import make_agent
from tests.helpers.personas import World, logged_in, make_user


@pytest.fixture
def viewer(world: World) -> User:
    user = make_user("viewer@alpha.test")
    Membership.objects.get_or_create(
        user=user, workspace=world.workspace_a, defaults={"role": Role.VIEWER}
    )
    return user


def _exposed(world: World, agent_id: int) -> bool:
    with schema_context(world.workspace_a.schema_name):
        return Agent.objects.get(pk=agent_id).a2a_exposed


def test_the_owner_exposes_an_agent_and_its_page_shows_the_card_address(world: World) -> None:
    agent = make_agent(world, exposed=False)
    client = logged_in(world.owner)
    page = client.get(f"/w/alpha/agents/{agent.pk}/")
    assert b"Not reachable over A2A." in page.content
    assert b"Expose over A2A" in page.content

    response = client.post(f"/w/alpha/a2a/agents/{agent.pk}/expose/", {"exposed": "1"})
    assert response.status_code == 302
    assert _exposed(world, agent.pk)
    page = client.get(f"/w/alpha/agents/{agent.pk}/")
    assert f"/a2a/w/alpha/agents/{agent.pk}/.well-known/agent-card.json".encode() in page.content

    client.post(f"/w/alpha/a2a/agents/{agent.pk}/expose/", {"exposed": "0"})
    assert not _exposed(world, agent.pk)


def test_a_bad_choice_names_the_field(world: World) -> None:
    agent = make_agent(world, exposed=False)
    response = logged_in(world.owner).post(
        f"/w/alpha/a2a/agents/{agent.pk}/expose/", {"exposed": "yes"}
    )
    assert response.status_code == 400
    assert not _exposed(world, agent.pk)


def test_members_and_viewers_cannot_switch_it_nor_see_the_button(
    world: World, viewer: User
) -> None:
    agent = make_agent(world, exposed=False)
    for user in (world.member, viewer):
        client = logged_in(user)
        assert b"Expose over A2A" not in client.get(f"/w/alpha/agents/{agent.pk}/").content
        response = client.post(f"/w/alpha/a2a/agents/{agent.pk}/expose/", {"exposed": "1"})
        assert response.status_code == 403
    assert not _exposed(world, agent.pk)


def test_outsiders_and_anonymous_visitors_reach_nothing(world: World) -> None:
    agent = make_agent(world, exposed=False)
    outsider = logged_in(world.outsider).post(
        f"/w/alpha/a2a/agents/{agent.pk}/expose/", {"exposed": "1"}
    )
    assert outsider.status_code == 404
    anonymous = Client().post(f"/w/alpha/a2a/agents/{agent.pk}/expose/", {"exposed": "1"})
    assert anonymous.status_code == 302
    assert "/accounts/login/" in anonymous["Location"]
    assert not _exposed(world, agent.pk)
    # Another workspace's agent id through one's own workspace is not found either.
    mine = logged_in(world.outsider).post(
        f"/w/bravo/a2a/agents/{agent.pk}/expose/", {"exposed": "1"}
    )
    assert mine.status_code == 404
