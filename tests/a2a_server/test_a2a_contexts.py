"""A2A contexts are conversations of runs (decision 125): a message with the contextId an
earlier task carried is the next turn, and the model sees the earlier turns; a streamed answer
arrives as it is written. The official `a2a-sdk` client against the whole ASGI application on a
loopback port, a real Celery worker, and the model on the loopback FakeOpenAI (so we see
exactly what it received)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from a2a.types import GetTaskRequest, SendMessageRequest, TaskState
from a2a.utils.errors import InvalidParamsError
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from agents import services as agent_services
from agents.models import Agent, AgentRun, Conversation
from billing import quotas
from billing.models import WorkspacePlan
from tenants.models import Workspace
from tests.fakes import FakeOpenAI
from tests.helpers.a2a import a2a_client, agent_url, ask, card_of, http, make_key
from tests.helpers.agents import register_fake_model
from tests.helpers.personas import World, access_of

FIRST = "My favourite colour is teal. Remember it."
FIRST_ANSWER = "Noted: teal."
SECOND = "What is my favourite colour?"
SECOND_ANSWER = "Your favourite colour is teal."


@pytest.fixture
def fake(settings: Any) -> Iterator[FakeOpenAI]:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    with FakeOpenAI() as server:
        yield server
    assert server.server_errors == []


def _agent(world: World, base_url: str, *, workspace: Workspace | None = None) -> Agent:
    """An exposed agent with last-turns memory on the fake model, in `workspace` (alpha)."""
    workspace = workspace or world.workspace_a
    owner = world.owner if workspace == world.workspace_a else world.outsider
    with schema_context(workspace.schema_name):
        model = register_fake_model(base_url, name=f"fake{Agent.objects.count()}")
        agent = agent_services.agent_create(
            access=access_of(owner, workspace),
            name=f"Rememberer {Agent.objects.count()}",
            model=model,
            memory_mode="last_turns",
        )
        Agent.objects.filter(pk=agent.pk).update(a2a_exposed=True)
    return agent


def _in(request: SendMessageRequest, context_id: str) -> SendMessageRequest:
    request.message.context_id = context_id
    return request


def _sent(fake: FakeOpenAI, index: int) -> list[tuple[str, str]]:
    body = fake.requests[index].body
    return [(m["role"], m["content"]) for m in body["messages"] if m["role"] != "system"]


def _send(url: str, secret: str, request: SendMessageRequest, *, streaming: bool) -> list[Any]:
    async def call() -> list[Any]:
        async with http(secret) as client:
            a2a = a2a_client(client, await card_of(client, url), streaming=streaming)
            return [event async for event in a2a.send_message(request)]

    return asyncio.run(call())


def _get(url: str, secret: str, task_id: str) -> Any:
    async def call() -> Any:
        async with http(secret) as client:
            a2a = a2a_client(client, await card_of(client, url), streaming=False)
            return await a2a.get_task(GetTaskRequest(id=task_id))

    return asyncio.run(call())


@pytest.mark.worker
def test_a_message_in_the_returned_context_is_the_next_turn_and_the_model_sees_the_first(
    committed_world: World, asgi_live_server: Any, worker_queue: str, fake: FakeOpenAI
) -> None:
    agent = _agent(committed_world, fake.base_url)
    secret = make_key(committed_world)
    url = agent_url(asgi_live_server.url, committed_world.workspace_a, agent.pk)
    fake.queue(FIRST_ANSWER)
    fake.queue(SECOND_ANSWER)
    fake.queue("A fresh start.")

    [first] = _send(url, secret, ask(FIRST), streaming=False)
    context_id = first.task.context_id
    assert context_id.startswith("ctx-")
    assert first.task.status.state == TaskState.TASK_STATE_COMPLETED
    [second] = _send(url, secret, _in(ask(SECOND), context_id), streaming=False)
    assert second.task.context_id == context_id
    assert second.task.artifacts[0].parts[0].text == SECOND_ANSWER
    # The model saw the first exchange, then the new question.
    assert _sent(fake, 0) == [("user", FIRST)]
    assert _sent(fake, 1) == [("user", FIRST), ("assistant", FIRST_ANSWER), ("user", SECOND)]

    # While a message of the context is being answered, the context takes no other.
    with schema_context(committed_world.workspace_a.schema_name):
        AgentRun.objects.filter(pk=int(second.task.id)).update(status=AgentRun.Status.RUNNING)
    with pytest.raises(InvalidParamsError, match="still being answered") as busy:
        _send(url, secret, _in(ask("And mine?"), context_id), streaming=False)
    assert busy.value.data["fields"] == {"contextId": [busy.value.message]}
    with schema_context(committed_world.workspace_a.schema_name):
        AgentRun.objects.filter(pk=int(second.task.id)).update(status=AgentRun.Status.SUCCEEDED)

    # A message without contextId starts a new context: nothing of the first is sent.
    [other] = _send(url, secret, ask("Hello?"), streaming=False)
    assert other.task.context_id.startswith("ctx-")
    assert other.task.context_id != context_id
    assert _sent(fake, 2) == [("user", "Hello?")]

    # Each task is still a run that GetTask reads, in its context.
    for task in (first.task, second.task):
        fetched = _get(url, secret, task.id)
        assert fetched.status.state == TaskState.TASK_STATE_COMPLETED
        assert fetched.context_id == context_id
    with schema_context(committed_world.workspace_a.schema_name):
        runs = AgentRun.objects.filter(pk__in=[int(first.task.id), int(second.task.id)])
        conversation = Conversation.objects.get(context_id=context_id)
        assert {run.conversation_id for run in runs} == {conversation.pk}
        assert all(run.api_key_prefix and run.api_key_prefix in secret for run in runs)
        assert all(run.cost_usd > 0 for run in runs)  # the ledger priced each turn
        assert conversation.agent_id == agent.pk
        assert conversation.title == FIRST


@pytest.mark.worker
def test_a_task_from_before_contexts_continues_under_its_own_context_id(
    committed_world: World, asgi_live_server: Any, worker_queue: str, fake: FakeOpenAI
) -> None:
    """A task whose run has no conversation (answered before contexts were conversations, or
    its conversation deleted since) carries `run-<id>`; a client that sends it back continues
    from that exchange, under the same id."""
    agent = _agent(committed_world, fake.base_url)
    secret = make_key(committed_world)
    url = agent_url(asgi_live_server.url, committed_world.workspace_a, agent.pk)
    fake.queue(FIRST_ANSWER)
    [first] = _send(url, secret, ask(FIRST), streaming=False)
    assert first.task.status.state == TaskState.TASK_STATE_COMPLETED
    with schema_context(committed_world.workspace_a.schema_name):
        Conversation.objects.filter(context_id=first.task.context_id).delete()
    run_context = f"run-{first.task.id}"
    assert _get(url, secret, first.task.id).context_id == run_context
    fake.queue(SECOND_ANSWER)
    fake.queue("Still teal.")

    [second] = _send(url, secret, _in(ask(SECOND), run_context), streaming=False)
    [third] = _send(url, secret, _in(ask("Sure?"), run_context), streaming=False)

    assert second.task.context_id == third.task.context_id == run_context
    assert second.task.artifacts[0].parts[0].text == SECOND_ANSWER
    assert _sent(fake, 1) == [("user", FIRST), ("assistant", FIRST_ANSWER), ("user", SECOND)]
    assert _sent(fake, 2)[-3:] == [
        ("user", SECOND),
        ("assistant", SECOND_ANSWER),
        ("user", "Sure?"),
    ]
    with schema_context(committed_world.workspace_a.schema_name):
        conversation = Conversation.objects.get(context_id=run_context)
        assert set(conversation.runs.values_list("pk", flat=True)) == {
            int(first.task.id),
            int(second.task.id),
            int(third.task.id),
        }


def test_a_foreign_or_unknown_context_is_refused_naming_context_id(
    committed_world: World, asgi_live_server: Any, fake: FakeOpenAI
) -> None:
    """Another agent's context, another workspace's, and one never issued: the same error,
    which names contextId and says nothing of the context."""
    agent = _agent(committed_world, fake.base_url)
    other = _agent(committed_world, fake.base_url)
    bravo_agent = _agent(committed_world, fake.base_url, workspace=committed_world.workspace_b)
    secret = make_key(committed_world)
    bravo_secret = make_key(committed_world, workspace=committed_world.workspace_b)
    url = agent_url(asgi_live_server.url, committed_world.workspace_a, agent.pk)
    [first] = _send(url, secret, ask(FIRST, return_immediately=True), streaming=False)
    context_id = first.task.context_id

    refusals = [
        (agent_url(asgi_live_server.url, committed_world.workspace_a, other.pk), secret),
        (
            agent_url(asgi_live_server.url, committed_world.workspace_b, bravo_agent.pk),
            bravo_secret,
        ),
    ]
    for other_url, other_secret in refusals:
        with pytest.raises(InvalidParamsError, match="contextId") as refused:
            _send(other_url, other_secret, _in(ask(SECOND), context_id), streaming=False)
        assert "No context with that id" in str(refused.value)
    for unknown in ("ctx-0000", "run-1", "nonsense"):
        with pytest.raises(InvalidParamsError, match="contextId"):
            _send(url, secret, _in(ask(SECOND), unknown), streaming=False)
    with schema_context(committed_world.workspace_a.schema_name):
        assert AgentRun.objects.count() == 1
        assert Conversation.objects.count() == 1
    with schema_context(committed_world.workspace_b.schema_name):
        assert not AgentRun.objects.exists()
        assert not Conversation.objects.exists()


def test_the_plan_quota_still_refuses_a_message_in_a_context(
    committed_world: World, asgi_live_server: Any, fake: FakeOpenAI, settings: Any
) -> None:
    settings.BILLING_QUOTAS = True
    agent = _agent(committed_world, fake.base_url)
    secret = make_key(committed_world)
    url = agent_url(asgi_live_server.url, committed_world.workspace_a, agent.pk)
    [first] = _send(url, secret, ask(FIRST, return_immediately=True), streaming=False)
    with schema_context(committed_world.workspace_a.schema_name):
        # Answered (by hand, or by a worker left from another test: either way it is done).
        AgentRun.objects.filter(pk=int(first.task.id)).update(
            status=AgentRun.Status.SUCCEEDED, output=FIRST_ANSWER
        )
    with transaction.atomic():
        row = quotas.plan_row_locked(committed_world.workspace_a.pk, timezone.now())
        row.status = WorkspacePlan.Status.READ_ONLY
        row.save(update_fields=["status"])

    with pytest.raises(InvalidParamsError, match="Runs are paused") as refused:
        _send(url, secret, _in(ask(SECOND), first.task.context_id), streaming=False)
    assert refused.value.data["code"] == "quota_exceeded"
    with schema_context(committed_world.workspace_a.schema_name):
        assert AgentRun.objects.count() == 1  # nothing was started, nor counted


@pytest.mark.worker
def test_a_streamed_answer_arrives_in_pieces_that_add_up_to_the_saved_answer(
    committed_world: World, asgi_live_server: Any, worker_queue: str, fake: FakeOpenAI
) -> None:
    agent = _agent(committed_world, fake.base_url)
    secret = make_key(committed_world)
    url = agent_url(asgi_live_server.url, committed_world.workspace_a, agent.pk)
    fake.queue(FIRST_ANSWER)
    answer = "Teal is a blue green. It sits between cyan and green. Nice choice."
    fake.queue(answer, chunk_delay=0.05)

    [first] = _send(url, secret, ask(FIRST), streaming=False)
    events = _send(url, secret, _in(ask(SECOND), first.task.context_id), streaming=True)
    assert events[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
    updates = [event.artifact_update for event in events if event.HasField("artifact_update")]
    pieces = [update.artifact.parts[0].text for update in updates]
    assert len([piece for piece in pieces if piece]) > 1
    assert [update.append for update in updates] == [False] + [True] * (len(updates) - 1)
    assert [update.last_chunk for update in updates][-1]
    assert "".join(pieces) == answer
    assert {update.artifact.artifact_id for update in updates} == {
        f"run-{events[0].task.id}-answer"
    }
    assert all(update.context_id == first.task.context_id for update in updates)
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    assert _sent(fake, 1)[:2] == [("user", FIRST), ("assistant", FIRST_ANSWER)]
    fetched = _get(url, secret, events[0].task.id)
    assert fetched.artifacts[0].parts[0].text == answer
