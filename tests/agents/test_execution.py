"""One answer path for runs and chat: output-format enforcement with a repair round, and the
semantic response cache (near-duplicates answered with no upstream call, invalidated by a new
version). The model is the real `openai` SDK against the loopback FakeOpenAI."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from agents import services
from agents.models import Agent, AgentRun, CachedResponse, UsageRecord
from tenants.permissions import Access
from tests.fakes import FakeOpenAI
from tests.helpers.agents import run_now

pytestmark = pytest.mark.django_db

TRIAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "area": {"type": "string"},
        "urgency": {"enum": ["low", "normal", "high"]},
    },
    "required": ["area", "urgency"],
    "additionalProperties": False,
}


def _run(access: Access, agent: Agent, text: str) -> AgentRun:
    return run_now(access, agent, text)


def test_offline_agent_answers_in_its_output_format(owner_access: Access, in_alpha: None) -> None:
    agent = services.agent_create(
        access=owner_access, name="Triage", model="offline:demo", output_schema=TRIAGE_SCHEMA
    )
    run = _run(owner_access, agent, "My invoice is wrong")
    assert run.status == AgentRun.Status.SUCCEEDED, run.error
    assert run.output_data == {"area": "My invoice is wrong", "urgency": "low"}
    assert json.loads(run.output) == run.output_data


def test_an_answer_off_format_gets_one_repair_round_naming_the_problem(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = services.agent_create(
        access=owner_access, name="Triage", model=fake_model, output_schema=TRIAGE_SCHEMA
    )
    fake_openai.queue('{"area": "billing", "urgency": "urgent!"}')
    fake_openai.queue('```json\n{"area": "billing", "urgency": "high"}\n```')
    run = _run(owner_access, agent, "I was charged twice")
    assert run.status == AgentRun.Status.SUCCEEDED, run.error
    assert run.output_data == {"area": "billing", "urgency": "high"}
    first, repair = (r.body for r in fake_openai.requests)
    assert "JSON schema" in first["messages"][0]["content"]  # the instruction in the system
    assert "at $.urgency" in repair["messages"][-1]["content"]
    assert run.input_tokens > 0
    assert UsageRecord.objects.filter(run_id=run.pk).count() == 2


def test_an_answer_still_off_format_after_the_repair_fails_the_run(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = services.agent_create(
        access=owner_access, name="Triage", model=fake_model, output_schema=TRIAGE_SCHEMA
    )
    fake_openai.queue("Sure! It is a billing problem.")
    fake_openai.queue('{"area": "billing"}')
    run = _run(owner_access, agent, "I was charged twice")
    assert run.status == AgentRun.Status.FAILED
    assert "does not match the output schema" in run.error
    assert "'urgency' is a required" in run.error
    assert run.output == ""
    assert run.output_data is None


def test_an_invalid_output_schema_is_refused_naming_the_field(
    owner_access: Access, in_alpha: None
) -> None:
    from core.exceptions import ValidationFailed

    with pytest.raises(ValidationFailed) as refused:
        services.agent_create(
            access=owner_access, name="Bad", model="offline:demo", output_schema={"type": 12}
        )
    assert "output_schema" in refused.value.fields


def test_a_question_asked_again_is_answered_from_the_cache_without_calling_the_model(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    # Given a new agent: the exact tier is on without opting in
    agent = services.agent_create(access=owner_access, name="FAQ", model=fake_model)
    fake_openai.queue(
        "Refunds take 5 days.", usage={"prompt_tokens": 1000, "completion_tokens": 100}
    )
    first = _run(owner_access, agent, "How do I get a refund for my order?")
    calls = len(fake_openai.requests)
    # When the same question comes again in other case, spacing and punctuation
    second = _run(owner_access, agent, "  how do I get a REFUND for my order")

    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert len(fake_openai.requests) == calls == 1  # no upstream call for the hit
    assert second.output == "Refunds take 5 days."
    assert second.cost_usd == 0
    saved = UsageRecord.objects.get(outcome=UsageRecord.Outcome.CACHED)
    assert saved.saved_usd == first.cost_usd == Decimal("0.004500")  # 1000×$3 + 100×$15 per M
    assert CachedResponse.objects.get().hits == 1


def test_a_different_question_misses_the_cache(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = services.agent_create(
        access=owner_access, name="FAQ", model=fake_model, cache_enabled=True
    )
    fake_openai.queue("Refunds take 5 days.")
    fake_openai.queue("We ship worldwide.")
    _run(owner_access, agent, "How do I get a refund for my order?")
    other = _run(owner_access, agent, "Do you ship to Canada?")
    assert other.cache_hit is False
    assert other.output == "We ship worldwide."
    assert len(fake_openai.requests) == 2


def test_a_new_agent_version_empties_its_cache(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = services.agent_create(
        access=owner_access, name="FAQ", model=fake_model, cache_enabled=True
    )
    fake_openai.queue("Old answer.")
    fake_openai.queue("New answer.")
    _run(owner_access, agent, "What are your opening hours?")
    services.agent_update(
        access=owner_access, agent_id=agent.pk, system_prompt="We are open 9 to 5."
    )
    assert CachedResponse.objects.count() == 0
    again = _run(owner_access, agent, "What are your opening hours?")
    assert again.cache_hit is False
    assert again.output == "New answer."


def test_with_the_cache_turned_off_nothing_is_cached(owner_access: Access, in_alpha: None) -> None:
    plain = services.agent_create(
        access=owner_access, name="Plain", model="offline:demo", cache_enabled=False
    )
    _run(owner_access, plain, "Hello")
    second = _run(owner_access, plain, "Hello")
    assert second.cache_hit is False
    assert CachedResponse.objects.count() == 0
    assert UsageRecord.objects.filter(outcome=UsageRecord.Outcome.OK).count() == 2


def test_an_answer_that_read_the_clock_is_not_cached(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = services.agent_create(
        access=owner_access,
        name="Clock",
        model=fake_model,
        tools=["current_time"],
        cache_enabled=True,
    )
    fake_openai.queue(tool_calls=[("current_time", {"timezone": "UTC"})])
    fake_openai.queue("It is noon.")
    run = _run(owner_access, agent, "What time is it?")
    assert run.status == AgentRun.Status.SUCCEEDED
    assert run.tool_steps[0]["tool"] == "current_time"
    assert CachedResponse.objects.count() == 0
