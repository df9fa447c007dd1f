from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents import services
from agents.models import Agent, AgentRun, AgentVersion
from agents.runs.executor import execute_run
from tenants.models import Membership, Role
from tests.helpers.personas import World, access_of, logged_in, make_user

pytestmark = pytest.mark.django_db


def _url(name: str, slug: str = "alpha", **kwargs: int) -> str:
    return reverse(name, kwargs={"workspace_slug": slug, **kwargs})


FORM = {
    "name": "Pricing helper",
    "model": "offline:demo",
    "max_tokens": 512,
    "max_tool_calls": 4,
    "tools": ["calculator"],
    "system_prompt": "Be exact.",
}


@pytest.fixture
def agent(world: World) -> Agent:
    with schema_context(world.workspace_a.schema_name):
        return services.agent_create(
            access=access_of(world.owner, world.workspace_a), name="Existing", model="offline:demo"
        )


def test_owner_creates_edits_and_restores_an_agent_from_the_pages(
    world: World, owner_client: Client
) -> None:
    response = owner_client.post(_url("agent_create"), FORM)
    assert response.status_code == 302
    with schema_context(world.workspace_a.schema_name):
        agent = Agent.objects.get(name="Pricing helper")
    owner_client.post(_url("agent_detail", agent_id=agent.pk), {**FORM, "max_tokens": 2048})
    owner_client.post(_url("agent_restore", agent_id=agent.pk, number=1))
    page = owner_client.get(_url("agent_detail", agent_id=agent.pk)).content.decode()
    with schema_context(world.workspace_a.schema_name):
        versions = list(
            AgentVersion.objects.filter(agent=agent)
            .order_by("number")
            .values_list("number", "max_tokens")
        )
    assert versions == [(1, 512), (2, 2048), (3, 512)]
    assert "v3" in page
    assert "Restore" in page


def test_form_errors_are_shown_beside_their_fields(owner_client: Client) -> None:
    response = owner_client.post(_url("agent_create"), {**FORM, "model": "", "temperature": 9})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "model" in errors
    assert "temperature" in errors


def test_running_from_the_page_shows_the_result_when_done(
    world: World, owner_client: Client, agent: Agent
) -> None:
    response = owner_client.post(
        _url("agent_run", agent_id=agent.pk), {"input": "hello there"}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert 'hx-trigger="every 1s"' in html  # polls while queued
    with schema_context(world.workspace_a.schema_name):
        run = AgentRun.objects.get(agent=agent)
        execute_run(run.pk)  # what the worker does
    done = owner_client.get(_url("agent_run_status", agent_id=agent.pk, run_id=run.pk))
    assert "Succeeded" in done.content.decode()
    assert "every 1s" not in done.content.decode()  # finished: polling stops
    assert "[offline model]" in done.content.decode()


def test_viewers_see_agents_but_cannot_create_edit_or_run(world: World, agent: Agent) -> None:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    client = logged_in(viewer)
    assert client.get(_url("agent_list")).status_code == 200
    assert client.get(_url("agent_create")).status_code == 403
    assert client.post(_url("agent_detail", agent_id=agent.pk), FORM).status_code == 403
    assert client.post(_url("agent_run", agent_id=agent.pk), {"input": "x"}).status_code == 403


def test_outsiders_get_404_on_every_agent_page_and_action(
    world: World, outsider_client: Client, agent: Agent
) -> None:
    with schema_context(world.workspace_a.schema_name):
        version = agent.current_version
        assert version is not None
        run = AgentRun.objects.create(agent=agent, version=version, input="x")
    for method, url in [
        ("get", _url("agent_list")),
        ("get", _url("agent_create")),
        ("get", _url("agent_detail", agent_id=agent.pk)),
        ("post", _url("agent_detail", agent_id=agent.pk)),
        ("post", _url("agent_restore", agent_id=agent.pk, number=1)),
        ("post", _url("agent_run", agent_id=agent.pk)),
        ("get", _url("agent_run_status", agent_id=agent.pk, run_id=run.pk)),
    ]:
        assert getattr(outsider_client, method)(url).status_code == 404, url
    # Ids of workspace A do not exist in the outsider's own workspace either.
    assert (
        outsider_client.get(_url("agent_detail", slug="bravo", agent_id=agent.pk)).status_code
        == 404
    )


def test_agent_list_query_count_does_not_grow(
    world: World, owner_client: Client, django_assert_max_num_queries
) -> None:
    with schema_context(world.workspace_a.schema_name):
        for i in range(12):
            services.agent_create(
                access=access_of(world.owner, world.workspace_a),
                name=f"Agent {i}",
                model="offline:demo",
            )
    owner_client.get(_url("agent_list"))
    with django_assert_max_num_queries(14):
        response = owner_client.get(_url("agent_list"))
    assert response.content.decode().count("offline:demo") == 12


def test_agent_form_saves_memory_knowledge_cache_and_output_format(
    world: World, owner_client: Client
) -> None:
    from agents.models import KnowledgeBase

    with schema_context(world.workspace_a.schema_name):
        base = KnowledgeBase.objects.create(name="Help center")
    schema = '{"type": "object", "properties": {"urgency": {"enum": ["low", "high"]}}}'
    form = owner_client.get(_url("agent_create")).content.decode()
    assert "Help center" in form
    assert "Output format (JSON schema)" in form
    response = owner_client.post(
        _url("agent_create"),
        {
            **FORM,
            "memory_mode": "last_turns",
            "memory_turns": 4,
            "knowledge_base_ids": [str(base.pk)],
            "cache_enabled": "on",
            "output_schema": schema,
        },
    )
    assert response.status_code == 302
    with schema_context(world.workspace_a.schema_name):
        version = Agent.objects.get(name="Pricing helper").current_version
    assert version is not None
    assert (version.memory_mode, version.memory_turns) == ("last_turns", 4)
    assert version.knowledge_base_ids == [base.pk]
    assert version.cache_enabled is True
    assert version.output_schema["properties"]["urgency"]["enum"] == ["low", "high"]


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("{not json", "Not valid JSON"),
        ('{"type": 12}', "Not a valid JSON schema"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_a_broken_output_format_is_shown_beside_its_field(
    world: World, owner_client: Client, schema: str, message: str
) -> None:
    response = owner_client.post(_url("agent_create"), {**FORM, "output_schema": schema})
    assert response.status_code == 400
    assert message in str(response.context["form"].errors["output_schema"])
    with schema_context(world.workspace_a.schema_name):
        assert not Agent.objects.filter(name="Pricing helper").exists()
