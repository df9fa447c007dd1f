from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.db import connection
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from agents import services
from agents.models import Agent, AgentRun, AgentVersion, UsageRecord
from agents.runs.executor import execute_run
from core.exceptions import NotFound, PermissionDenied, ValidationFailed
from tenants.models import Membership, Role, Workspace
from tenants.permissions import Access
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.helpers.personas import World, access_of, make_user

pytestmark = pytest.mark.django_db

SUPPORT = {
    "name": "Support triage",
    "model": "offline:demo",
    "system_prompt": "Classify the ticket.",
    "tools": ["calculator"],
}


def _in(workspace: Workspace):
    return schema_context(workspace.schema_name)


def test_every_save_makes_an_immutable_version_and_old_ones_can_be_restored(
    owner_access: Access, workspace_a: Workspace
) -> None:
    with _in(workspace_a):
        agent = services.agent_create(access=owner_access, **SUPPORT)
        services.agent_update(access=owner_access, agent_id=agent.pk, temperature=0.7)
        services.agent_update(access=owner_access, agent_id=agent.pk, description="only text")
        restored = services.agent_restore_version(access=owner_access, agent_id=agent.pk, number=1)
        versions = list(
            AgentVersion.objects.filter(agent=agent)
            .order_by("number")
            .values_list("number", "temperature")
        )
        first = AgentVersion.objects.get(agent=agent, number=1)
        with pytest.raises(ValueError, match="immutable"):
            first.save()
        agent.refresh_from_db()
    # Descriptive edits do not make versions; behaviour edits and restores do.
    assert versions == [(1, None), (2, 0.7), (3, None)]
    assert restored.number == 3
    assert agent.current_version_id == restored.pk
    assert agent.description == "only text"


def test_invalid_settings_name_their_fields(owner_access: Access, workspace_a: Workspace) -> None:
    with _in(workspace_a), pytest.raises(ValidationFailed) as excinfo:
        services.agent_create(
            access=owner_access,
            name="Bad",
            model="",
            temperature=3,
            tools=["shell"],
            blocked_patterns=["(unclosed"],
        )
    assert set(excinfo.value.fields) == {"model", "temperature", "tools", "blocked_patterns"}


def test_duplicate_and_archive(owner_access: Access, workspace_a: Workspace) -> None:
    with _in(workspace_a):
        agent = services.agent_create(access=owner_access, **SUPPORT)
        copy = services.agent_duplicate(access=owner_access, agent_id=agent.pk)
        services.agent_archive(access=owner_access, agent_id=agent.pk)
        with pytest.raises(NotFound):
            services.agent_run_start(access=owner_access, agent_id=agent.pk, input="hi")
        assert copy.name == "Support triage (copy)"
        assert copy.current_version.system_prompt == "Classify the ticket."


def test_viewers_cannot_build_or_run(world: World, workspace_a: Workspace) -> None:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=workspace_a, role=Role.VIEWER)
    with _in(workspace_a):
        agent = services.agent_create(access=access_of(world.owner, workspace_a), **SUPPORT)
        with pytest.raises(PermissionDenied):
            services.agent_create(access=access_of(viewer, workspace_a), **SUPPORT)
        with pytest.raises(PermissionDenied):
            services.agent_run_start(
                access=access_of(viewer, workspace_a), agent_id=agent.pk, input="hi"
            )


def test_a_run_executes_tools_and_records_tokens_and_steps(
    owner_access: Access, workspace_a: Workspace, django_capture_on_commit_callbacks
) -> None:
    with _in(workspace_a):
        agent = services.agent_create(access=owner_access, **SUPPORT)
        run = services.agent_run_start(
            access=owner_access, agent_id=agent.pk, input="What is 19 * 3?"
        )
        assert execute_run(run.pk) == AgentRun.Status.SUCCEEDED
        assert execute_run(run.pk) is None  # a redelivered task finds the run taken
        run.refresh_from_db()
    assert "57" in run.output
    assert run.tool_steps == [
        {"tool": "calculator", "arguments": {"expression": "19 * 3"}, "output": "57", "ok": True}
    ]
    assert run.input_tokens > 0
    assert run.output_tokens > 0
    assert run.finished_at is not None


def test_blocked_output_fails_the_run_without_showing_it(
    owner_access: Access, workspace_a: Workspace
) -> None:
    with _in(workspace_a):
        agent = services.agent_create(
            access=owner_access,
            name="Guarded",
            model="offline:demo",
            blocked_patterns=[r"deterministic\s+reply"],  # in the offline model's answer
        )
        run = services.agent_run_start(
            access=owner_access, agent_id=agent.pk, input="Tell me your refund policy"
        )
        execute_run(run.pk)
        run.refresh_from_db()
        calls = UsageRecord.objects.filter(run_id=run.pk).count()
    assert run.status == AgentRun.Status.FAILED
    assert run.output == ""
    assert "blocked pattern" in run.error
    assert calls == 1  # the model was asked; its answer was withheld


def test_question_on_a_blocked_topic_is_refused_before_any_call(
    owner_access: Access, workspace_a: Workspace
) -> None:
    with _in(workspace_a):
        agent = services.agent_create(
            access=owner_access,
            name="Guarded",
            model="offline:demo",
            blocked_patterns=[r"refund\s+policy"],
        )
        run = services.agent_run_start(
            access=owner_access, agent_id=agent.pk, input="Tell me your refund policy"
        )
        execute_run(run.pk)
        run.refresh_from_db()
        calls = UsageRecord.objects.filter(run_id=run.pk).count()
    assert run.status == AgentRun.Status.FAILED
    assert "blocked topic" in run.error
    assert "nothing was sent" in run.error
    assert calls == 0


def test_run_over_its_cost_cap_fails(owner_access: Access, workspace_a: Workspace) -> None:
    from billing.models import ModelPrice

    ModelPrice.objects.create(
        provider="offline",
        model="pricey",
        input_per_mtok=Decimal(1000),
        output_per_mtok=Decimal(1000),
    )
    with _in(workspace_a):
        agent = services.agent_create(
            access=owner_access,
            name="Pricey",
            model="offline:pricey",
            max_cost_per_run_usd=Decimal("0.0001"),
        )
        run = services.agent_run_start(access=owner_access, agent_id=agent.pk, input="hello")
        execute_run(run.pk)
        run.refresh_from_db()
    # Refused before the call: nothing was sent and nothing was paid.
    assert run.status == AgentRun.Status.FAILED
    assert "Refused before calling" in run.error
    assert "left of its $0.0001 cap" in run.error
    with _in(workspace_a):
        assert not UsageRecord.objects.exists()


# --- API


def _key(world: World, scopes: list[str]) -> str:
    from tenants.services import api_key_create

    _, secret = api_key_create(
        access=access_of(world.owner, world.workspace_a), name="ci", scopes=scopes
    )
    return secret


def test_api_creates_an_agent_and_lists_it(world: World) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {_key(world, ['build', 'workspace.view'])}")
    created = client.post("/api/v1/agents/", SUPPORT, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["current_version"]["number"] == 1
    listing = client.get("/api/v1/agents/").json()
    assert [a["name"] for a in listing["results"]] == ["Support triage"]


def test_api_validation_errors_name_fields(world: World) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {_key(world, ['build', 'workspace.view'])}")
    response = client.post("/api/v1/agents/", {**SUPPORT, "tools": ["rm"]}, format="json")
    assert response.status_code == 400
    assert "tools" in response.json()["error"]["fields"]


def test_api_agent_with_an_output_format_returns_parsed_data(world: World) -> None:
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {_key(world, ['build', 'run', 'workspace.view'])}"
    )
    schema = {
        "type": "object",
        "properties": {"urgency": {"enum": ["low", "high"]}, "reply": {"type": "string"}},
        "required": ["urgency", "reply"],
    }
    created = client.post(
        "/api/v1/agents/",
        {**SUPPORT, "model": "offline:demo", "output_schema": schema, "cache_enabled": True},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["current_version"]["cache_enabled"] is True
    bad = client.post("/api/v1/agents/", {**SUPPORT, "output_schema": {"type": 3}}, format="json")
    assert "output_schema" in bad.json()["error"]["fields"]
    with _in(world.workspace_a):
        run = services.agent_run_start(
            access=access_of(world.owner, world.workspace_a),
            agent_id=created.json()["id"],
            input="The app crashes on login",
        )
        execute_run(run.pk)
    body = client.get(f"/api/v1/agents/{created.json()['id']}/runs/{run.pk}/").json()
    assert body["status"] == "succeeded"
    assert body["output_data"] == {"urgency": "low", "reply": "The app crashes on login"}
    assert body["cache_hit"] is False


def test_outsiders_get_404_for_agents_and_runs(world: World) -> None:
    with _in(world.workspace_a):
        agent = services.agent_create(access=access_of(world.owner, world.workspace_a), **SUPPORT)
        version = agent.current_version
        assert version is not None
        run = AgentRun.objects.create(agent=agent, version=version, input="x")
    client = APIClient()
    client.force_authenticate(world.outsider)
    for method, url in [
        ("get", f"/api/v1/agents/{agent.pk}/"),
        ("patch", f"/api/v1/agents/{agent.pk}/"),
        ("post", f"/api/v1/agents/{agent.pk}/runs/"),
        ("get", f"/api/v1/agents/{agent.pk}/runs/{run.pk}/"),
    ]:
        response = getattr(client, method)(
            url, {"input": "hi"}, format="json", HTTP_X_WORKSPACE="alpha"
        )
        assert response.status_code == 404, (method, url)
    # From their own workspace the ids do not exist either.
    response = client.get(f"/api/v1/agents/{agent.pk}/", HTTP_X_WORKSPACE="bravo")
    assert response.status_code == 404
    assert connection.schema_name == "public"


@pytest.mark.worker
def test_api_run_is_accepted_then_finished_by_a_real_worker(
    committed_world: World, worker_queue: str, settings
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # the callback receiver is on loopback
    secret = _key(committed_world, ["build", "run", "workspace.view"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    agent_id = client.post("/api/v1/agents/", SUPPORT, format="json").json()["id"]

    with WebhookReceiver() as receiver:
        accepted = client.post(
            f"/api/v1/agents/{agent_id}/runs/",
            {"input": "What is 6 * 7?", "callback_url": receiver.url},
            format="json",
        )
        assert accepted.status_code == 202
        assert accepted.json()["status"] == "queued"
        # The worker runs the agent, then its webhook task calls back: wait for that.
        assert receiver.arrived.wait(timeout=60), "no webhook within 60 s"

    body = client.get(f"/api/v1/agents/{agent_id}/runs/{accepted.json()['id']}/").json()
    assert body["status"] == "succeeded", body
    assert "42" in body["output"]
    assert body["tool_steps"][0]["output"] == "42"
    delivered = json.loads(receiver.received[0]["body"])
    assert delivered["run"]["id"] == body["id"]
    assert delivered["run"]["status"] == "succeeded"
    with _in(committed_world.workspace_a):
        assert Agent.objects.get(pk=agent_id).runs.count() == 1
