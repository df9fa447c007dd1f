"""Agent names are unique among a workspace's active agents, ignoring case (service, form and
API say so on the `name` field), and an agent's model must be one the platform knows: a model
alias of the workspace, a priced provider:model, or offline:<name>. The form offers exactly
those in a grouped picker. See docs/decisions.md §39."""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from django.apps import apps as global_apps
from django.db import connection
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from agents import services
from agents.gateway import model_names
from agents.models import Agent, AliasTarget, ModelAlias
from billing.models import ModelPrice
from core.exceptions import ValidationFailed
from tenants.permissions import Access
from tests.helpers.personas import World, access_of, key_client
from workflows.library import prepare

pytestmark = pytest.mark.django_db

API = "/api/v1/agents/"
FORM = {"name": "Support triage", "model": "offline:demo", "max_tokens": 512, "max_tool_calls": 4}


def _url(name: str, **kwargs: int) -> str:
    return reverse(name, kwargs={"workspace_slug": "alpha", **kwargs})


# --- unique names ------------------------------------------------------------------------------


def test_a_second_agent_of_the_same_name_is_refused_ignoring_case(
    in_alpha: None, owner_access: Access
) -> None:
    services.agent_create(access=owner_access, name="Support triage", model="offline:demo")
    with pytest.raises(ValidationFailed) as caught:
        services.agent_create(access=owner_access, name="  support TRIAGE ", model="offline:demo")
    assert caught.value.fields["name"] == [
        "Another agent is already named “Support triage” (names are unique in a workspace, "
        "ignoring case). Choose another name."
    ]
    assert Agent.objects.count() == 1


def test_name_and_model_problems_are_reported_together(
    in_alpha: None, owner_access: Access
) -> None:
    services.agent_create(access=owner_access, name="Support triage", model="offline:demo")
    with pytest.raises(ValidationFailed) as caught:
        services.agent_create(access=owner_access, name="Support Triage", model="smrat")
    assert sorted(caught.value.fields) == ["model", "name"]


def test_renaming_onto_another_agents_name_is_refused_but_changing_case_is_not(
    in_alpha: None, owner_access: Access
) -> None:
    services.agent_create(access=owner_access, name="Support triage", model="offline:demo")
    other = services.agent_create(access=owner_access, name="Billing", model="offline:demo")
    with pytest.raises(ValidationFailed) as caught:
        services.agent_update(access=owner_access, agent_id=other.pk, name="SUPPORT triage")
    assert "name" in caught.value.fields
    services.agent_update(access=owner_access, agent_id=other.pk, name="BILLING")
    assert Agent.objects.get(pk=other.pk).name == "BILLING"


def test_an_archived_agents_name_is_free_again(in_alpha: None, owner_access: Access) -> None:
    old = services.agent_create(access=owner_access, name="Support triage", model="offline:demo")
    services.agent_archive(access=owner_access, agent_id=old.pk)
    new = services.agent_create(access=owner_access, name="Support triage", model="offline:demo")
    assert new.pk != old.pk
    assert Agent.objects.filter(name="Support triage").count() == 2


def test_the_database_refuses_a_duplicate_the_services_did_not_see(
    in_alpha: None, owner_access: Access
) -> None:
    from django.db import IntegrityError, transaction

    services.agent_create(access=owner_access, name="Support triage", model="offline:demo")
    with pytest.raises(IntegrityError), transaction.atomic():
        Agent.objects.create(name="SUPPORT TRIAGE")


def test_duplicating_finds_a_free_name(in_alpha: None, owner_access: Access) -> None:
    source = services.agent_create(access=owner_access, name="Triage", model="offline:demo")
    first = services.agent_duplicate(access=owner_access, agent_id=source.pk)
    second = services.agent_duplicate(access=owner_access, agent_id=source.pk)
    assert [first.name, second.name] == ["Triage (copy)", "Triage (copy) (2)"]


def test_the_form_shows_a_taken_name_beside_the_name_field(
    world: World, owner_client: Client
) -> None:
    assert owner_client.post(_url("agent_create"), FORM).status_code == 302
    response = owner_client.post(_url("agent_create"), {**FORM, "name": "SUPPORT TRIAGE"})
    assert response.status_code == 400
    assert "already named “Support triage”" in response.context["form"].errors["name"][0]


def test_the_api_answers_400_naming_the_name_field(world: World) -> None:
    api = key_client(world, ["build", "workspace.view"])
    assert api.post(API, FORM, format="json").status_code == 201
    response = api.post(API, {**FORM, "name": "support triage"}, format="json")
    assert response.status_code == 400
    assert "already named" in response.json()["error"]["fields"]["name"][0]
    agent_id = api.post(API, {**FORM, "name": "Billing"}, format="json").json()["id"]
    renamed = api.patch(f"{API}{agent_id}/", {"name": "Support Triage"}, format="json")
    assert renamed.status_code == 400
    assert "name" in renamed.json()["error"]["fields"]


# --- the migration that makes names unique ---------------------------------------------------


def test_the_migration_renames_duplicates_keeping_the_oldest_name(in_alpha: None) -> None:
    migration = importlib.import_module("agents.migrations.0012_agent_name_unique")
    # The constraint is what the migration adds; here it is dropped (in this test's
    # transaction only) to make the duplicates a workspace had before it.
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX agent_name_unique_ci")
    first = Agent.objects.create(name="Support triage")
    second = Agent.objects.create(name="support triage")
    third = Agent.objects.create(name="Support triage")
    taken = Agent.objects.create(name="Support triage (2)")
    archived = Agent.objects.create(name="Support triage", archived_at="2024-01-01T00:00Z")
    long = Agent.objects.create(name="x" * 80)
    long_twin = Agent.objects.create(name="X" * 80)

    migration.rename_duplicates(global_apps, None)

    names = dict(Agent.objects.values_list("pk", "name"))
    assert names[first.pk] == "Support triage"
    assert names[second.pk] == "support triage (3)"  # (2) was taken
    assert names[third.pk] == "Support triage (4)"
    assert names[taken.pk] == "Support triage (2)"
    assert names[archived.pk] == "Support triage"  # archived names are not reserved
    assert names[long.pk] == "x" * 80
    assert names[long_twin.pk] == "X" * 76 + " (2)"


# --- models ----------------------------------------------------------------------------------


def test_unknown_models_are_refused_when_the_agent_is_saved(
    in_alpha: None, owner_access: Access
) -> None:
    ModelAlias.objects.create(name="smart")
    ModelPrice.objects.create(
        provider="anthropic",
        model="claude-sonnet-4-5",
        input_per_mtok=Decimal(3),
        output_per_mtok=Decimal(15),
    )
    for known in ("smart", "anthropic:claude-sonnet-4-5", "offline:demo", "offline:anything"):
        assert model_names.model_problem(known) == "", known
    problems = {
        name: model_names.model_problem(name)
        for name in ("smrat", "anthropic:claude-sonet-4-5", "gpt:4", "openai:", "")
    }
    assert problems["smrat"].startswith("There is no model alias “smrat” in this workspace.")
    assert problems["anthropic:claude-sonet-4-5"].startswith(
        "“anthropic:claude-sonet-4-5” is not a model this platform knows"
    )
    assert problems["gpt:4"].startswith("“gpt” is not a provider this platform supports")
    assert problems["openai:"] == "Name the openai model after the colon, e.g. openai:<model>."
    assert problems[""] == "Choose a model alias or provider:model."
    with pytest.raises(ValidationFailed) as caught:
        services.agent_create(access=owner_access, name="Typo", model="smrat")
    assert list(caught.value.fields) == ["model"]
    agent = services.agent_create(access=owner_access, name="Fine", model="smart")
    with pytest.raises(ValidationFailed) as caught:
        services.agent_update(access=owner_access, agent_id=agent.pk, model="openai:gpt-9")
    assert list(caught.value.fields) == ["model"]


def test_the_form_offers_aliases_and_priced_models_and_refuses_others(
    world: World, owner_client: Client
) -> None:
    with schema_context(world.workspace_a.schema_name):
        alias = ModelAlias.objects.create(name="smart", description="Best answers")
        AliasTarget.objects.create(alias=alias, position=0, kind="offline", model="demo")
        ModelPrice.objects.create(
            provider="openai", model="gpt-4.1", input_per_mtok=Decimal("2"), output_per_mtok=8
        )
    page = owner_client.get(_url("agent_create")).content.decode()
    picker = page.split('name="model"')[1].split("</select>")[0]
    assert '<optgroup label="Model aliases of this workspace">' in picker
    assert '<option value="smart" selected>smart — Best answers</option>' in picker
    assert '<optgroup label="OpenAI">' in picker
    assert "openai:gpt-4.1 ($2 in / $8 out per Mtok)" in picker
    assert '<option value="offline:demo">' in picker

    response = owner_client.post(_url("agent_create"), {**FORM, "model": "openai:gpt-4.2"})
    assert response.status_code == 400
    assert "is not a model this platform knows" in response.context["form"].errors["model"][0]
    assert owner_client.post(_url("agent_create"), {**FORM, "model": "smart"}).status_code == 302


def test_the_picker_keeps_a_model_it_does_not_list(
    world: World, owner_client: Client, owner_access: Access
) -> None:
    with schema_context(world.workspace_a.schema_name):
        agent = services.agent_create(access=owner_access, name="Odd", model="offline:echo")
    page = owner_client.get(_url("agent_detail", agent_id=agent.pk)).content.decode()
    assert '<optgroup label="Current">' in page
    assert '<option value="offline:echo" selected>offline:echo</option>' in page


def test_the_api_refuses_an_unknown_model_naming_the_model_field(world: World) -> None:
    api: APIClient = key_client(world, ["build", "workspace.view"])
    response = api.post(API, {**FORM, "model": "anthropic:claude-nope"}, format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["model"]


def test_a_member_installing_a_template_without_the_default_alias_gets_the_offline_model(
    world: World,
) -> None:

    with schema_context(world.workspace_a.schema_name):
        access = access_of(world.member, world.workspace_a)
        workflow = prepare.workflow_from_template(access=access, key="support-triage")
        agent = Agent.objects.get(name="Support triage")
        assert agent.current_version is not None
        assert agent.current_version.model == "offline:demo"
        assert "The agent “Support triage” uses" in workflow.versions.get().note
