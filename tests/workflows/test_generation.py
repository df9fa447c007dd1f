"""Generating a definition from a description: the model's answer (validated, one repair
round) when the workspace has a model that reaches a provider, else the closest template, and
the result always validates."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.models import AliasTarget, ModelAlias
from core.exceptions import PermissionDenied, ValidationFailed
from tenants.models import Role
from tenants.permissions import Access
from tests.fakes import FakeOpenAI
from workflows import library, validators
from workflows.generation import generate_definition, generation_model
from workflows.library import prepare

pytestmark = pytest.mark.django_db

INVALID = {
    "schema_version": 1,
    "steps": [
        {"id": "answer", "type": "llm", "config": {"model": "fake", "prompt": "{{ input.topic }}"}}
    ],
    "edges": [],
}
VALID = {
    "schema_version": 1,
    "inputs": {"topic": {"type": "string", "required": True}},
    "steps": [
        {"id": "answer", "type": "llm", "config": {"model": "fake", "prompt": "{{ input.topic }}"}}
    ],
    "edges": [],
    "output": {"answer": "{{ steps.answer.text }}"},
}


def chat_requests(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests_to("chat/completions")]


def offline_default_alias() -> None:
    alias = ModelAlias.objects.create(name="default")
    AliasTarget.objects.create(alias=alias, position=0, kind="offline", model="demo")


# --- with a model --------------------------------------------------------------------------


def test_the_model_repairs_its_first_answer_with_the_validators_issues(
    fake_model: str, fake_openai: FakeOpenAI, owner_access: Access
) -> None:
    fake_openai.queue(text=json.dumps(INVALID))
    fake_openai.queue(text="```json\n" + json.dumps(VALID) + "\n```")

    generated = generate_definition("Answer questions about a topic", access=owner_access)

    assert generated.used_llm is True
    assert generated.definition == VALID
    assert "fixed" in generated.notes[0]
    first, second = chat_requests(fake_openai)
    system = first["messages"][0]["content"]
    assert first["messages"][0]["role"] == "system"
    assert 'use the model "fake"' in system
    assert "calculator" in system
    assert first["messages"][-1] == {"role": "user", "content": "Answer questions about a topic"}
    repair = second["messages"][-1]["content"]
    assert "steps[0] (answer).config.prompt: reads input.topic" in repair
    assert second["messages"][-2] == {"role": "assistant", "content": json.dumps(INVALID)}


def test_a_valid_first_answer_is_used_as_is(
    fake_model: str, fake_openai: FakeOpenAI, owner_access: Access
) -> None:
    fake_openai.queue(text=json.dumps(VALID))

    generated = generate_definition("Answer questions about a topic", access=owner_access)

    assert generated.used_llm
    assert generated.definition == VALID
    assert len(chat_requests(fake_openai)) == 1


def test_two_invalid_answers_fall_back_to_a_template_with_a_note(
    fake_model: str, fake_openai: FakeOpenAI, owner_access: Access
) -> None:
    fake_openai.queue(text=json.dumps(INVALID))
    fake_openai.queue(text="Sorry, I cannot do that.")

    generated = generate_definition(
        "Extract the vendor, line items and total from supplier invoices", access=owner_access
    )

    assert generated.used_llm is False
    assert len(chat_requests(fake_openai)) == 2  # one repair round, no more
    assert "answered twice with an invalid definition" in generated.notes[0]
    assert "the answer is not JSON" in generated.notes[0]
    assert generated.template_key == "invoice-extraction"
    assert validators.validate(generated.definition) == []
    models = {s["config"].get("model") for s in generated.definition["steps"] if s["type"] == "llm"}
    assert models == {"fake"}  # the workspace's alias: it has no "default"


def test_a_model_that_cannot_be_reached_falls_back_to_a_template(
    fake_model: str, fake_openai: FakeOpenAI, owner_access: Access
) -> None:
    fake_openai.queue_error(401)

    generated = generate_definition(
        "Summarise meeting notes into action items", access=owner_access
    )

    assert generated.used_llm is False
    assert "could not be asked" in generated.notes[0]
    assert generated.template_key == "meeting-action-items"
    assert validators.validate(generated.definition) == []


# --- without one ---------------------------------------------------------------------------


def test_an_offline_only_workspace_gets_the_closest_template_adapted(
    owner_access: Access, in_alpha: None
) -> None:
    offline_default_alias()
    assert generation_model() is None

    description = "Tag customer feedback by theme and sentiment, then cluster it for product"
    generated = generate_definition(description, access=owner_access)

    assert generated.used_llm is False
    assert generated.template_key == "feedback-clustering"
    assert generated.name == "Tag customer feedback by theme and sentiment, then cluster"
    assert "No model that can reach a provider" in generated.notes[0]
    assert any("Customer feedback clustering" in n for n in generated.notes)
    llm_systems = [
        s["config"]["system"] for s in generated.definition["steps"] if s["type"] == "llm"
    ]
    assert all(description in system for system in llm_systems)
    assert validators.validate(generated.definition) == []


def test_a_template_needing_a_missing_agent_is_passed_over(
    owner_access: Access, in_alpha: None
) -> None:
    description = "Triage support tickets by urgency and draft the first reply"
    generated = generate_definition(description, access=owner_access)
    assert generated.template_key != "support-triage"
    assert any("“Support ticket triage” (needs Support triage)" in n for n in generated.notes)
    assert validators.validate(generated.definition) == []

    prepare.template_prepare(access=owner_access, template=library.template_get("support-triage"))
    assert generate_definition(description, access=owner_access).template_key == "support-triage"


def test_a_description_matching_nothing_gets_a_one_step_workflow(
    owner_access: Access, in_alpha: None
) -> None:
    generated = generate_definition("Zorblax the quux {{ wibble }}", access=owner_access)

    assert generated.template_key == ""
    assert [s["type"] for s in generated.definition["steps"]] == ["llm"]
    assert generated.definition["steps"][0]["config"]["system"] == "Zorblax the quux (( wibble ))"
    assert any("does not have yet" in n for n in generated.notes)  # no "default" alias here
    assert validators.validate(generated.definition) == []


@pytest.mark.parametrize("template", library.templates(), ids=lambda t: t.key)
def test_the_rule_based_result_always_validates(
    template: library.Template, owner_access: Access, in_alpha: None
) -> None:
    generated = generate_definition(template.description, access=owner_access)
    assert validators.validate(generated.definition) == []


def test_a_description_is_required_and_viewers_cannot_generate(
    world, owner_access: Access, in_alpha: None
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        generate_definition("  ", access=owner_access)
    assert "description" in caught.value.fields
    viewer = Access(workspace=world.workspace_a, user=world.member, role=Role.VIEWER)
    with pytest.raises(PermissionDenied):
        generate_definition("Summarise meeting notes", access=viewer)
