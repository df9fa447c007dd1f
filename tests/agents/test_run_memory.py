"""Runs of a conversation (A2A contexts, decision 125) follow the chat's memory rules, refresh
a summary-memory conversation after each answer, and publish their text as it is written;
other runs send their input alone and publish nothing. The executor is called as the Celery
worker calls it; the model is the real `openai` SDK against the loopback FakeOpenAI."""

from __future__ import annotations

import pytest

from agents import services
from agents.memory import SUMMARY_ACK, SUMMARY_INTRO
from agents.models import AgentRun, Conversation
from agents.runs import live
from agents.runs.executor import execute_run
from tenants.permissions import Access
from tests.fakes import FakeOpenAI

pytestmark = pytest.mark.django_db


def _sent(fake: FakeOpenAI, index: int) -> list[tuple[str, str]]:
    body = fake.requests[index].body
    return [(m["role"], m["content"]) for m in body["messages"] if m["role"] != "system"]


def _run(access: Access, agent_id: int, text: str, conversation: Conversation | None) -> AgentRun:
    run = services.agent_run_start(
        access=access,
        agent_id=agent_id,
        input=text,
        conversation_id=conversation.pk if conversation else None,
    )
    execute_run(run.pk)
    run.refresh_from_db()
    return run


def test_a_summary_memory_context_sends_the_summary_after_its_first_run(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = services.agent_create(
        access=owner_access, name="Summariser", model=fake_model, memory_mode="summary"
    )
    conversation = Conversation.objects.create(agent=agent, context_id="ctx-test")
    fake_openai.queue("Noted: teal.")
    fake_openai.queue("The user's favourite colour is teal.")  # the summary refresh
    fake_openai.queue("Teal.")

    first = _run(owner_access, agent.pk, "My favourite colour is teal.", conversation)
    assert first.status == AgentRun.Status.SUCCEEDED
    conversation.refresh_from_db()
    assert conversation.summary == "The user's favourite colour is teal."
    assert conversation.summary_turns == 1
    # Published as it was written, in pieces that add up to the saved answer.
    pieces = live.buffered(owner_access.workspace.schema_name, first)
    assert len(pieces) > 1
    assert "".join(pieces) == first.output == "Noted: teal."

    second = _run(owner_access, agent.pk, "What is my favourite colour?", conversation)
    assert second.output == "Teal."
    assert _sent(fake_openai, 2) == [
        ("user", SUMMARY_INTRO + "The user's favourite colour is teal."),
        ("assistant", SUMMARY_ACK),
        ("user", "What is my favourite colour?"),
    ]


def test_a_run_outside_a_context_sends_its_input_alone_and_publishes_nothing(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = services.agent_create(
        access=owner_access, name="Plain", model=fake_model, memory_mode="last_turns"
    )
    fake_openai.queue("One.")
    fake_openai.queue("Two.")
    first = _run(owner_access, agent.pk, "First?", None)
    _run(owner_access, agent.pk, "Second?", None)
    assert _sent(fake_openai, 1) == [("user", "Second?")]
    assert fake_openai.requests[0].body.get("stream") is not True
    assert live.buffered(owner_access.workspace.schema_name, first) == []


def test_a_failed_run_of_a_context_is_not_remembered(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = services.agent_create(
        access=owner_access, name="Forgetful", model=fake_model, memory_mode="last_turns"
    )
    conversation = Conversation.objects.create(agent=agent, context_id="ctx-fail")
    fake_openai.queue_error(400)
    fake_openai.queue("Second answer.")
    failed = _run(owner_access, agent.pk, "First?", conversation)
    assert failed.status == AgentRun.Status.FAILED
    _run(owner_access, agent.pk, "Second?", conversation)
    assert _sent(fake_openai, len(fake_openai.requests) - 1) == [("user", "Second?")]
