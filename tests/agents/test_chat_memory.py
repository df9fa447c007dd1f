"""What a chat turn sends to the model under each memory mode, and how a turn ends when the
model cannot or may not answer. The model is the real `openai` SDK against the loopback
FakeOpenAI (so we see exactly what it received); turns are answered by calling what the
Celery worker calls."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from agents import services as agent_services
from agents.chat import services
from agents.chat.answering import turn_answer
from agents.memory import SUMMARY_ACK, SUMMARY_INTRO, SUMMARY_SYSTEM
from agents.models import (
    Agent,
    AliasTarget,
    Conversation,
    ConversationTurn,
    ModelAlias,
    ProviderCredential,
    UsageRecord,
    WorkspaceBudget,
)
from billing.models import ModelPrice
from tenants.permissions import Access
from tests.fakes import FakeOpenAI

pytestmark = pytest.mark.django_db

SYSTEM = "Be brief."


def _alias(name: str, base_url: str) -> str:
    credential = ProviderCredential(name=name, kind="openai_compatible", base_url=base_url)
    credential.set_api_key("sk-test-key")
    credential.save()
    alias = ModelAlias.objects.create(name=name)
    AliasTarget.objects.create(
        alias=alias, position=0, kind="openai_compatible", model="m1", credential=credential
    )
    return name


@pytest.fixture
def fake_model(fake_openai: FakeOpenAI, in_alpha: None) -> str:
    return _alias("fake", fake_openai.base_url)


def _agent(access: Access, model: str, **config: Any) -> Agent:
    return agent_services.agent_create(
        access=access, name="Helper", model=model, system_prompt=SYSTEM, **config
    )


def _chat(access: Access, agent: Agent, *questions: str) -> tuple[Conversation, list[str]]:
    """Ask each question in one conversation, answering each turn as the worker would."""
    conversation = services.conversation_start(
        access=access, agent_id=agent.pk, question=questions[0]
    )
    statuses = [str(turn_answer(conversation.turns.get().pk))]
    for question in questions[1:]:
        turn = services.turn_start(
            access=access, conversation_id=conversation.pk, question=question
        )
        statuses.append(str(turn_answer(turn.pk)))
    conversation.refresh_from_db()
    return conversation, statuses


def _sent(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in body["messages"]]


def test_no_memory_sends_just_the_question(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = _agent(owner_access, fake_model, memory_mode="none")
    for answer in ("a1", "a2", "a3"):
        fake_openai.queue(answer)
    _, statuses = _chat(owner_access, agent, "q1", "q2", "q3")
    assert statuses == ["done", "done", "done"]
    assert _sent(fake_openai.requests[-1].body) == [("system", SYSTEM), ("user", "q3")]


def test_last_turns_sends_exactly_the_last_n_answered_turns(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = _agent(owner_access, fake_model, memory_mode="last_turns", memory_turns=2)
    for answer in ("a1", "a2", "a3", "a4"):
        fake_openai.queue(answer)
    conversation, statuses = _chat(owner_access, agent, "q1", "q2", "q3", "q4")

    assert statuses == ["done"] * 4
    assert _sent(fake_openai.requests[-1].body) == [
        ("system", SYSTEM),
        ("user", "q2"),
        ("assistant", "a2"),
        ("user", "q3"),
        ("assistant", "a3"),
        ("user", "q4"),
    ]
    assert _sent(fake_openai.requests[1].body) == [
        ("system", SYSTEM),
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
    ]
    assert conversation.summary == ""  # no summary calls in this mode
    assert len(fake_openai.requests) == 4


def test_a_failed_turn_is_not_remembered(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = _agent(
        owner_access, fake_model, memory_mode="last_turns", blocked_patterns=["forbidden"]
    )
    fake_openai.queue("a1")
    fake_openai.queue("a3")
    _, statuses = _chat(owner_access, agent, "q1", "a forbidden question", "q3")
    assert statuses == ["done", "failed", "done"]
    assert _sent(fake_openai.requests[-1].body) == [
        ("system", SYSTEM),
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q3"),
    ]


def test_summary_memory_keeps_a_running_summary_and_sends_it(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = _agent(owner_access, fake_model, memory_mode="summary")
    fake_openai.queue("Paris is the capital of France.")  # turn 1
    fake_openai.queue("The user asked about France's capital: Paris.")  # summary 1
    fake_openai.queue("About 2.1 million people.")  # turn 2
    fake_openai.queue("The user asked about Paris: capital of France, 2.1M people.")  # summary 2

    conversation, statuses = _chat(
        owner_access, agent, "What is the capital of France?", "How many people live there?"
    )

    assert statuses == ["done", "done"]
    first_turn, first_summary, second_turn, second_summary = (r.body for r in fake_openai.requests)
    assert _sent(first_turn) == [("system", SYSTEM), ("user", "What is the capital of France?")]
    assert first_summary["messages"][0] == {"role": "system", "content": SUMMARY_SYSTEM}
    assert "User: What is the capital of France?" in first_summary["messages"][1]["content"]
    assert "Assistant: Paris is the capital of France." in first_summary["messages"][1]["content"]
    assert _sent(second_turn) == [
        ("system", SYSTEM),
        ("user", SUMMARY_INTRO + "The user asked about France's capital: Paris."),
        ("assistant", SUMMARY_ACK),
        ("user", "How many people live there?"),
    ]
    assert "The user asked about France's capital: Paris." in _sent(second_summary)[1][1]
    assert conversation.summary == "The user asked about Paris: capital of France, 2.1M people."
    assert conversation.summary_turns == 2
    # Every call, summaries included, is in the ledger under the agent.
    assert UsageRecord.objects.filter(agent_id=agent.pk, outcome="ok").count() == 4


def test_summary_memory_works_offline(owner_access: Access, in_alpha: None) -> None:
    agent = _agent(owner_access, "offline:demo", memory_mode="summary")
    conversation, statuses = _chat(owner_access, agent, "Remember the number 42.")
    assert statuses == ["done"]
    assert conversation.summary.startswith("[offline model]")
    assert conversation.summary_turns == 1


def test_when_a_summary_call_fails_the_turns_it_missed_are_sent_verbatim(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = _agent(owner_access, fake_model, memory_mode="summary")
    fake_openai.queue("a1")
    fake_openai.queue_error(400, message="summary refused")  # the summary call fails
    fake_openai.queue("a2")
    fake_openai.queue("S")
    conversation, statuses = _chat(owner_access, agent, "q1", "q2")
    assert statuses == ["done", "done"]
    assert _sent(fake_openai.requests[2].body) == [
        ("system", SYSTEM),
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
    ]
    assert (conversation.summary, conversation.summary_turns) == ("S", 2)


def test_a_budget_refusal_fails_the_turn_with_the_message_on_the_page(
    world: Any, owner_access: Access, owner_client: Client, in_alpha: None
) -> None:
    ModelPrice.objects.create(
        provider="offline", model="demo", input_per_mtok=Decimal(100), output_per_mtok=Decimal(100)
    )
    WorkspaceBudget.objects.create(monthly_cap_usd=Decimal("0.01"))
    agent = _agent(owner_access, "offline:demo")
    conversation, statuses = _chat(owner_access, agent, "Hello?")

    turn = conversation.turns.get()
    assert statuses == ["failed"]
    assert turn.answer == ""
    assert turn.error.startswith("Refused before calling offline/demo")
    assert not UsageRecord.objects.exists()  # nothing was called, nothing spent
    page = owner_client.get(
        reverse(
            "conversation_detail",
            kwargs={"workspace_slug": "alpha", "conversation_id": conversation.pk},
        )
    ).content.decode()
    assert "Refused before calling offline/demo" in page
    assert "Failed" in page


def test_a_failing_provider_fails_the_turn_with_the_message(
    owner_access: Access, in_alpha: None
) -> None:
    dead = _alias("dead", "http://127.0.0.1:9/v1")  # nothing listens there
    agent = _agent(owner_access, dead)
    conversation, statuses = _chat(owner_access, agent, "Anyone there?")
    turn = conversation.turns.get()
    assert statuses == ["failed"]
    assert turn.error.startswith("No model could answer for 'dead'")
    assert turn.latency_ms >= 0
    assert turn.status == ConversationTurn.Status.FAILED


def test_an_answer_a_guardrail_withholds_is_not_kept(owner_access: Access, in_alpha: None) -> None:
    agent = _agent(owner_access, "offline:demo", blocked_patterns=["deterministic"])
    conversation, statuses = _chat(owner_access, agent, "Say something")
    turn = conversation.turns.get()
    assert statuses == ["failed"]
    assert turn.answer == ""
    assert "matched a blocked pattern" in turn.error
    assert turn.output_tokens > 0  # the call was made and is accounted for
