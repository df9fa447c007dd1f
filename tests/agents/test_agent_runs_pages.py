"""Agent runs in the UI: runs started from the API and from "Try it" are listed next to workflow
runs with their tool steps, tokens, cost and the provider and model that answered; offline
answers are labelled as placeholders; viewers may read, outsiders get 404."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from accounts.models import User
from agents import services
from agents.models import AgentRun
from agents.runs.executor import execute_run
from agents.runs.selectors import PLACEHOLDER_NOTE
from tenants.models import Membership, Role
from tests.helpers.personas import World, access_of, key_client, logged_in, make_user

pytestmark = pytest.mark.django_db


def _url(name: str, slug: str = "alpha", **kwargs: int) -> str:
    return reverse(name, kwargs={"workspace_slug": slug, **kwargs})


@pytest.fixture
def calculator_agent(world: World) -> int:
    with schema_context(world.workspace_a.schema_name):
        agent = services.agent_create(
            access=access_of(world.owner, world.workspace_a),
            name="Arithmetic",
            model="offline:demo",
            tools=["calculator"],
        )
    return agent.pk


@pytest.fixture
def viewer(world: World) -> User:
    user = make_user("viewer@alpha.test")
    Membership.objects.get_or_create(
        user=user, workspace=world.workspace_a, defaults={"role": Role.VIEWER}
    )
    return user


def _execute(world: World, run_id: int) -> None:
    """What the worker does once the run's transaction commits."""
    with schema_context(world.workspace_a.schema_name):
        execute_run(run_id)


def test_api_and_try_it_runs_are_listed_with_steps_tokens_cost_and_model(
    world: World, calculator_agent: int, owner_client: Client, viewer: User
) -> None:
    # given a run started from the API and one from "Try it", both finished by the worker
    api = key_client(world, ["run", "workspace.view"])
    accepted = api.post(
        f"/api/v1/agents/{calculator_agent}/runs/", {"input": "What is 6 * 7?"}, format="json"
    )
    assert accepted.status_code == 202
    _execute(world, accepted.json()["id"])
    tried = owner_client.post(
        _url("agent_run", agent_id=calculator_agent),
        {"input": "And 5 + 5?"},
        HTTP_HX_REQUEST="true",
    )
    assert tried.status_code == 200
    with schema_context(world.workspace_a.schema_name):
        try_run = AgentRun.objects.exclude(pk=accepted.json()["id"]).get()
        api_run = AgentRun.objects.get(pk=accepted.json()["id"])
    _execute(world, try_run.pk)

    # when a viewer opens the agent runs page (linked from the workspace navigation)
    client = logged_in(viewer)
    page = client.get(_url("agent_run_list"))
    assert page.status_code == 200
    html = page.content.decode()

    # then both runs are there, with who started them, the model, tool calls, tokens and cost
    assert f'href="{_url("agent_run_list")}"' in html  # the sidenav link
    rows = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0].split("</tr>")[:-1]
    assert len(rows) == 2
    by_run = {r.split('data-run="', 1)[1].split('"', 1)[0]: r for r in rows}
    api_row, try_row = by_run[str(api_run.pk)], by_run[str(try_run.pk)]
    assert "API key" in api_row
    assert "Try it" in try_row
    assert world.owner.email in try_row
    for row in (api_row, try_row):
        assert "Succeeded" in row
        assert "Arithmetic" in row
        assert "Offline" in row
        assert "demo" in row
        assert PLACEHOLDER_NOTE in row
    api_run.refresh_from_db()
    assert api_run.input_tokens + api_run.output_tokens > 0
    assert f">{api_run.input_tokens + api_run.output_tokens}<" in api_row
    assert 'title="calculator"' in api_row

    # and the run's page shows its tool step with arguments and output
    detail = client.get(_url("agent_run_detail", run_id=api_run.pk)).content.decode()
    assert 'data-tool="calculator"' in detail
    assert "42" in detail
    assert "6 * 7" in detail
    assert PLACEHOLDER_NOTE in detail
    assert f"{api_run.input_tokens} in" in detail


def test_try_it_panel_says_which_model_answered(
    world: World, calculator_agent: int, owner_client: Client
) -> None:
    owner_client.post(
        _url("agent_run", agent_id=calculator_agent), {"input": "Hi"}, HTTP_HX_REQUEST="true"
    )
    with schema_context(world.workspace_a.schema_name):
        run = AgentRun.objects.get()
    _execute(world, run.pk)
    panel = owner_client.get(
        _url("agent_run_status", agent_id=calculator_agent, run_id=run.pk)
    ).content.decode()
    assert "Answered by" in panel
    assert "Offline" in panel
    assert PLACEHOLDER_NOTE in panel
    assert _url("agent_run_detail", run_id=run.pk) in panel


def test_outsider_gets_404_on_the_runs_pages(
    world: World, calculator_agent: int, owner_client: Client, outsider_client: Client
) -> None:
    owner_client.post(
        _url("agent_run", agent_id=calculator_agent), {"input": "Hi"}, HTTP_HX_REQUEST="true"
    )
    with schema_context(world.workspace_a.schema_name):
        run = AgentRun.objects.get()
    assert outsider_client.get(_url("agent_run_list")).status_code == 404
    assert outsider_client.get(_url("agent_run_detail", run_id=run.pk)).status_code == 404
    # and from their own workspace the id does not exist
    assert (
        outsider_client.get(_url("agent_run_detail", slug="bravo", run_id=run.pk)).status_code
        == 404
    )


def test_runs_list_is_paginated_without_a_query_per_run(
    world: World, calculator_agent: int, owner_client: Client, django_assert_max_num_queries
) -> None:
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        for i in range(55):
            services.agent_run_start(access=access, agent_id=calculator_agent, input=f"{i} + 1")
    with django_assert_max_num_queries(25):
        first = owner_client.get(_url("agent_run_list")).content.decode()
    assert "55 runs" in first
    assert "Page 1 of 2" in first
    second = owner_client.get(_url("agent_run_list"), {"page": 2}).content.decode()
    assert second.count("data-run=") == 5
