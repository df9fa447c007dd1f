"""A2A with the official `a2a-sdk` client against the whole ASGI application on a loopback
port, with a real Celery worker executing the runs (docs/a2a.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from a2a.types import GetTaskRequest, TaskState
from django_tenants.utils import schema_context

from agents.models import AgentRun, AgentVersion
from tests.helpers.a2a import CARD, a2a_client, agent_url, ask, card_of, http, make_agent, make_key
from tests.helpers.personas import World

pytestmark = pytest.mark.worker


def test_the_card_names_the_agent_its_skill_its_endpoint_and_the_bearer_key(
    committed_world: World, asgi_live_server: Any
) -> None:
    agent = make_agent(committed_world)
    secret = make_key(committed_world)
    url = agent_url(asgi_live_server.url, committed_world.workspace_a, agent.pk)

    async def fetch() -> Any:
        async with http(secret) as client:
            return await card_of(client, url)

    card = asyncio.run(fetch())
    assert card.name == "Calculator"
    assert card.description == "Answers arithmetic questions."
    assert [skill.name for skill in card.skills] == ["Calculator"]
    assert list(card.skills[0].tags) == ["math"]
    assert card.supported_interfaces[0].url == url
    assert card.supported_interfaces[0].protocol_binding == "JSONRPC"
    assert card.capabilities.streaming
    scheme = card.security_schemes["workspaceApiKey"].http_auth_security_scheme
    assert scheme.scheme == "bearer"


def test_a_message_runs_the_agent_and_answers_with_the_run_as_its_task(
    committed_world: World, asgi_live_server: Any, worker_queue: str
) -> None:
    agent = make_agent(committed_world)
    secret = make_key(committed_world)
    url = agent_url(asgi_live_server.url, committed_world.workspace_a, agent.pk)

    async def converse() -> tuple[Any, Any]:
        async with http(secret) as client:
            a2a = a2a_client(client, await card_of(client, url), streaming=False)
            [response] = [event async for event in a2a.send_message(ask("What is 6 * 7?"))]
            fetched = await a2a.get_task(GetTaskRequest(id=response.task.id))
            return response.task, fetched

    task, fetched = asyncio.run(converse())
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert "42" in task.artifacts[0].parts[0].text
    assert fetched.status.state == TaskState.TASK_STATE_COMPLETED
    assert fetched.history[0].parts[0].text == "What is 6 * 7?"
    with schema_context(committed_world.workspace_a.schema_name):
        run = AgentRun.objects.get(pk=int(task.id))
    # An ordinary run: the key that started it, the ledger's tokens and cost.
    assert run.agent_id == agent.pk
    assert run.status == AgentRun.Status.SUCCEEDED
    assert run.api_key_prefix
    assert run.api_key_prefix in secret
    assert "42" in run.output


def test_a_streamed_message_sends_the_task_then_its_answer_then_its_end(
    committed_world: World, asgi_live_server: Any, worker_queue: str
) -> None:
    agent = make_agent(committed_world)
    secret = make_key(committed_world)
    url = agent_url(asgi_live_server.url, committed_world.workspace_a, agent.pk)

    async def stream() -> list[Any]:
        async with http(secret) as client:
            a2a = a2a_client(client, await card_of(client, url), streaming=True)
            return [event async for event in a2a.send_message(ask("What is 6 * 7?"))]

    events = asyncio.run(stream())
    kinds = [event.WhichOneof("payload") for event in events]
    assert kinds[0] == "task"
    assert events[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
    # The answer arrives as the worker writes it: appended pieces, then the last chunk.
    answers = [event.artifact_update for event in events if event.HasField("artifact_update")]
    assert [answer.append for answer in answers] == [False] + [True] * (len(answers) - 1)
    assert answers[-1].last_chunk
    streamed = "".join(answer.artifact.parts[0].text for answer in answers)
    assert "42" in streamed
    with schema_context(committed_world.workspace_a.schema_name):
        assert AgentRun.objects.get(pk=int(events[0].task.id)).output == streamed
    assert kinds[-1] == "status_update"
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED


def _status(url: str, secret: str | None, *, card: bool) -> int:
    async def call() -> int:
        async with http(secret) as client:
            if card:
                response = await client.get(url + CARD)
            else:
                response = await client.post(
                    url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "1"}},
                )
            return response.status_code

    return asyncio.run(call())


def test_refusals_anonymous_wrong_key_outsider_key_scope_and_agent_not_exposed(
    committed_world: World, asgi_live_server: Any
) -> None:
    exposed = make_agent(committed_world)
    hidden = make_agent(committed_world, exposed=False, name="Hidden")
    secret = make_key(committed_world)
    outsider_secret = make_key(committed_world, workspace=committed_world.workspace_b)
    viewer_secret = make_key(committed_world, scopes=["workspace.view"])
    url = agent_url(asgi_live_server.url, committed_world.workspace_a, exposed.pk)
    hidden_url = agent_url(asgi_live_server.url, committed_world.workspace_a, hidden.pk)
    for card in (True, False):
        assert _status(url, None, card=card) == 401  # cards are not public (decision 117)
        assert _status(url, "amk_nope_nothing", card=card) == 401
        assert _status(url, outsider_secret, card=card) == 404
        assert _status(url, viewer_secret, card=card) == 403
        assert _status(hidden_url, secret, card=card) == 404
        assert _status(url, secret, card=card) == 200
    # The outsider's own workspace slug does not reach alpha's agent either.
    bravo_url = agent_url(asgi_live_server.url, committed_world.workspace_b, exposed.pk)
    assert _status(bravo_url, outsider_secret, card=True) == 404


def test_an_unknown_task_is_a_json_rpc_error_not_someone_elses_run(
    committed_world: World, asgi_live_server: Any
) -> None:
    agent = make_agent(committed_world)
    other = make_agent(committed_world, name="Other")
    secret = make_key(committed_world)

    async def call(task_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {secret}"}) as client:
            response = await client.post(
                agent_url(asgi_live_server.url, committed_world.workspace_a, other.pk),
                json={"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": task_id}},
                headers={"A2A-Version": "1.0"},
            )
            body: dict[str, Any] = response.json()
            return body

    with schema_context(committed_world.workspace_a.schema_name):
        version = AgentVersion.objects.get(agent=agent)
        run = AgentRun.objects.create(agent=agent, version=version, input="hi", status="succeeded")
    for task_id in (str(run.pk), "nonsense"):
        body = asyncio.run(call(task_id))
        assert body["error"]["code"] == -32001, body  # TaskNotFound
