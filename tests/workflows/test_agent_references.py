"""Agent steps hold their agent by id (docs/decisions.md §39): saving binds a name to the id, a
rename or a new agent of the old name changes nothing about what runs, exports and marketplace
snapshots carry names that an import binds again in the target workspace, the migration
converts name-based definitions, and the agent's pages and API say which workflows use it."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from django.apps import apps as global_apps
from django.db import connection
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents import services as agent_services
from agents.models import Agent, UsageRecord
from core.exceptions import ValidationFailed
from tenants.permissions import Access
from tests.helpers.personas import World, access_of, key_client
from tests.helpers.workflows import drain, make_workflow
from workflows import agent_refs, io, runs, services
from workflows.models import RunStatus, StepRun, Workflow, WorkflowRun

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def by_name(name: str, *, prompt: str = "{{ input.text }}") -> dict[str, Any]:
    return {
        "schema_version": 1,
        "inputs": {"text": {"type": "string", "required": True}},
        "steps": [
            {"id": "reply", "type": "agent", "config": {"agent": name, "prompt": prompt}},
            {
                "id": "each",
                "type": "map",
                "config": {
                    "items": "['a', 'b']",
                    "node": {"type": "agent", "config": {"agent": name, "prompt": "{{ item }}"}},
                },
            },
        ],
        "edges": [{"from": "reply", "to": "each"}],
        "output": {"answer": "{{ steps.reply.text }}"},
    }


def agent(access: Access, name: str, **config: Any) -> Agent:
    return agent_services.agent_create(access=access, name=name, model="offline:demo", **config)


def configs(definition: dict[str, Any]) -> list[dict[str, Any]]:
    return list(agent_refs.agent_configs(definition))


def _url(name: str, **kwargs: Any) -> str:
    return reverse(name, kwargs={"workspace_slug": "alpha", **kwargs})


# --- binding and running -----------------------------------------------------------------------


def test_saving_binds_names_to_ids_and_a_rename_keeps_the_workflow_on_its_agent(
    in_alpha: None, owner_access: Access
) -> None:
    triage = agent(owner_access, "Support triage")
    workflow = services.workflow_create(
        access=owner_access, name="Triage", definition=by_name("support TRIAGE")
    )
    stored = workflow.active_version.definition
    assert [(c["agent_id"], c["agent"]) for c in configs(stored)] == [
        (triage.pk, "Support triage"),
        (triage.pk, "Support triage"),
    ]

    # Given a rename, and a new agent taking the old name ...
    agent_services.agent_update(access=owner_access, agent_id=triage.pk, name="Helpdesk")
    newcomer = agent(owner_access, "Support triage")
    # ... when the workflow runs ...
    run = runs.run_start(
        workflow=workflow, inputs={"text": "hi"}, trigger=WorkflowRun.TriggerKind.MANUAL
    )
    drain()
    # ... then it asked the agent it was saved with, under its new name.
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert StepRun.objects.get(run=run, node_id="reply").input["agent"] == "Helpdesk"
    asked = set(
        UsageRecord.objects.filter(agent_id__isnull=False).values_list("agent_id", flat=True)
    )
    assert asked == {triage.pk}
    assert newcomer.pk not in asked


def test_an_id_wins_over_a_stale_label_which_saving_refreshes(
    in_alpha: None, owner_access: Access
) -> None:
    triage = agent(owner_access, "Support triage")
    agent(owner_access, "Billing")
    document = by_name("Billing")
    for config in configs(document):
        config["agent_id"] = triage.pk
    bound = agent_refs.bind(document)
    assert [(c["agent_id"], c["agent"]) for c in configs(bound)] == [
        (triage.pk, "Support triage")
    ] * 2
    assert configs(document)[0]["agent"] == "Billing"  # the input is not changed


def test_a_name_no_agent_has_is_refused_naming_the_step(
    in_alpha: None, owner_access: Access
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        services.workflow_create(access=owner_access, name="T", definition=by_name("Nobody"))
    problems = caught.value.fields["definition"]
    assert problems == [
        "steps[0] (reply).config.agent: there is no agent named 'Nobody' in this workspace",
        "steps[1] (each).config.node.config.agent: there is no agent named 'Nobody' in this "
        "workspace",
    ]


def test_a_stored_step_without_an_id_fails_with_a_message_saying_what_to_do(
    in_alpha: None, owner_access: Access
) -> None:
    agent(owner_access, "Support triage")
    workflow = make_workflow(by_name("Support triage"))  # as if the migration could not bind it
    run = runs.run_start(
        workflow=workflow, inputs={"text": "hi"}, trigger=WorkflowRun.TriggerKind.MANUAL
    )
    drain()
    step = StepRun.objects.get(run=run, node_id="reply")
    assert step.error == (
        "The step names the agent 'Support triage' but does not hold its id: choose the agent "
        "in the step again and save the workflow."
    )


def test_the_api_returns_the_bound_definition(world: World) -> None:
    with schema_context(world.workspace_a.schema_name):
        triage = agent(access_of(world.owner, world.workspace_a), "Support triage")
    api = key_client(world, ["workspace.view", "build", "run"])
    response = api.post(
        "/api/v1/workflows/",
        {"name": "Triage", "definition": by_name("Support triage")},
        format="json",
    )
    assert response.status_code == 201, response.content
    workflow_id = response.json()["id"]
    version = api.get(f"/api/v1/workflows/{workflow_id}/versions/1/").json()
    assert version["definition"]["steps"][0]["config"]["agent_id"] == triage.pk


# --- export, import, marketplace ---------------------------------------------------------------


def test_export_names_agents_and_import_binds_them_in_another_workspace(world: World) -> None:
    alpha = access_of(world.owner, world.workspace_a)
    beta = access_of(world.outsider, world.workspace_b)
    with schema_context(world.workspace_a.schema_name):
        triage = agent(alpha, "Support triage")
        workflow = services.workflow_create(
            access=alpha, name="Triage", definition=by_name("Support triage")
        )
        agent_services.agent_update(access=alpha, agent_id=triage.pk, name="Helpdesk")
        text = io.export_definition(workflow, "json")
        yaml_text = io.export_definition(workflow, "yaml")
    exported = json.loads(text)
    assert "agent_id" not in text
    assert "agent_id" not in yaml_text
    assert [c["agent"] for c in configs(exported)] == ["Helpdesk", "Helpdesk"]

    with schema_context(world.workspace_b.schema_name):
        with pytest.raises(ValidationFailed) as caught:
            io.import_document(access=beta, text=text, fmt="json")
        assert caught.value.fields["definition"][0] == (
            "steps[0] (reply).config.agent: there is no agent named 'Helpdesk' in this workspace"
        )
        theirs = agent(beta, "HELPDESK")
        imported = io.import_document(access=beta, text=yaml_text, fmt="yaml")
        assert [
            (c["agent_id"], c["agent"]) for c in configs(imported.active_version.definition)
        ] == [(theirs.pk, "HELPDESK")] * 2


def test_a_marketplace_snapshot_names_agents_and_an_install_binds_the_copies(
    world: World,
) -> None:
    from marketplace import snapshot

    alpha = access_of(world.owner, world.workspace_a)
    beta = access_of(world.outsider, world.workspace_b)
    with schema_context(world.workspace_a.schema_name):
        triage = agent(alpha, "Support triage")
        workflow = services.workflow_create(
            access=alpha, name="Triage", definition=by_name("Support triage")
        )
        agent_services.agent_update(access=alpha, agent_id=triage.pk, name="Helpdesk")
        taken = snapshot.workflow_snapshot(Workflow.objects.get(pk=workflow.pk))
    assert "agent_id" not in json.dumps(taken["workflow"])
    assert [s["name"] for s in taken["agents"]] == ["Helpdesk"]
    with schema_context(world.workspace_b.schema_name):
        agent(beta, "helpdesk")  # the name is taken here: the copy gets another
        _, pk = snapshot.install_snapshot(beta, taken, "workflow", listing_version_id=1)
        installed = Workflow.objects.get(pk=pk).active_version.definition
        copy = Agent.objects.get(name="Helpdesk (from marketplace)")
        assert [c["agent_id"] for c in configs(installed)] == [copy.pk, copy.pk]


# --- the migration -----------------------------------------------------------------------------


def _migration() -> Any:
    return importlib.import_module("workflows.migrations.0003_agent_steps_by_id")


def test_the_conversion_picks_what_the_old_engine_ran() -> None:
    migration = _migration()
    # Active agents (id, name): two "Support triage", the old engine took the lowest id.
    rule = migration.old_engine_rule([(9, "Support triage"), (4, "Support triage"), (5, "Other")])
    document = by_name("Support triage")
    document["steps"].append(
        {"id": "held", "type": "agent", "config": {"agent_id": 77, "agent": "Other", "prompt": "x"}}
    )
    document["steps"].append(
        {"id": "lost", "type": "agent", "config": {"agent": "support triage", "prompt": "x"}}
    )
    converted, changed = migration.convert_definition(document, rule)
    assert changed
    assert [c.get("agent_id") for c in configs(converted)] == [4, 4, 77, None]
    assert "agent_id" not in configs(document)[0]  # the input is not changed
    untouched = {"schema_version": 1, "steps": [{"id": "t", "type": "transform", "config": {}}]}
    assert migration.convert_definition(untouched, rule) == (untouched, False)
    assert migration.convert_definition("not a definition", rule) == ("not a definition", False)


def test_the_migration_converts_stored_versions_before_names_are_made_unique(
    in_alpha: None,
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX agent_name_unique_ci")  # the duplicates of before 0012
    first = Agent.objects.create(name="Support triage")
    Agent.objects.create(name="Support triage")
    Agent.objects.create(name="Gone", archived_at="2024-01-01T00:00Z")
    workflow = make_workflow(by_name("Support triage"))
    stale = make_workflow(by_name("Gone"), name="Stale")

    _migration().agent_steps_by_id(global_apps, None)
    importlib.import_module("agents.migrations.0012_agent_name_unique").rename_duplicates(
        global_apps, None
    )

    converted = Workflow.objects.get(pk=workflow.pk).active_version.definition
    assert [c["agent_id"] for c in configs(converted)] == [first.pk, first.pk]
    assert Agent.objects.get(pk=first.pk).name == "Support triage"
    assert all("agent_id" not in c for c in configs(stale.active_version.definition))


# --- who uses an agent -------------------------------------------------------------------------


@pytest.fixture
def used(world: World) -> Agent:
    """ "Support triage", used by the published "Triage" and by a draft of "Drafting"; the
    archived "Old" also used it (and is not counted)."""
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        triage = agent(access, "Support triage")
        agent(access, "Spare")
        services.workflow_create(access=access, name="Triage", definition=by_name(triage.name))
        drafting = services.workflow_create(
            access=access, name="Drafting", definition=by_name("Spare")
        )
        services.version_save(access=access, workflow=drafting, definition=by_name(triage.name))
        old = services.workflow_create(access=access, name="Old", definition=by_name(triage.name))
        services.workflow_archive(access=access, workflow=old)
        return triage


def test_the_agent_page_says_which_workflows_use_it(
    world: World, owner_client: Client, used: Agent
) -> None:
    with schema_context(world.workspace_a.schema_name):
        ids = dict(Workflow.objects.values_list("name", "pk"))
    page = owner_client.get(_url("agent_detail", agent_id=used.pk)).content.decode()
    assert "Used by 2 workflows" in page
    for name in ("Drafting", "Triage"):
        assert f'<a href="{_url("workflow_detail", workflow_id=ids[name])}">{name}</a>' in page
    assert "renaming it keeps them running it" in page
    assert '"Old"' not in page
    assert ">Old<" not in page


def test_archiving_asks_first_and_names_the_workflows_it_stops(
    world: World, owner_client: Client, used: Agent
) -> None:
    url = _url("agent_archive", agent_id=used.pk)
    page = owner_client.get(url).content.decode()
    assert "Used by 2 workflows" in page
    assert "their agent steps fail" in page
    assert "Archive it anyway" in page
    with schema_context(world.workspace_a.schema_name):
        assert Agent.objects.get(pk=used.pk).archived_at is None
    response = owner_client.post(url)
    assert response.status_code == 302
    with schema_context(world.workspace_a.schema_name):
        assert Agent.objects.get(pk=used.pk).archived_at is not None


def test_members_who_cannot_build_cannot_archive(world: World, used: Agent) -> None:
    from tenants.models import Membership, Role

    Membership.objects.filter(user=world.member, workspace=world.workspace_a).update(
        role=Role.VIEWER
    )
    client = Client()
    client.force_login(world.member)
    assert client.get(_url("agent_archive", agent_id=used.pk)).status_code == 403
    assert client.post(_url("agent_archive", agent_id=used.pk)).status_code == 403


def test_the_api_counts_the_workflows_using_an_agent(world: World, used: Agent) -> None:
    api = key_client(world, ["workspace.view", "build"])
    assert api.get(f"/api/v1/agents/{used.pk}/").json()["used_by_workflows"] == 2
    renamed = api.patch(f"/api/v1/agents/{used.pk}/", {"name": "Helpdesk"}, format="json")
    assert renamed.status_code == 200
    assert renamed.json()["used_by_workflows"] == 2


# --- the builder's picker ----------------------------------------------------------------------


def test_the_step_panel_picks_agents_by_id_with_a_distinguishing_label(
    world: World, owner_client: Client
) -> None:
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        triage = agent(access, "Support triage")
        billing = agent(access, "Billing")
        workflow = services.workflow_create(
            access=access, name="Triage", definition=by_name("Support triage")
        )
        agent_services.agent_archive(access=access, agent_id=triage.pk)
        agent(access, "Support triage")  # the name is free again: two now share it
    page = owner_client.get(
        _url("workflow_detail", workflow_id=workflow.pk) + "?step=reply", **HX
    ).content.decode()
    picker = page.split('name="cfg_agent_id"')[1].split("</select>")[0]
    label = f"Support triage (#{triage.pk} · offline:demo, archived)"
    assert f'<option value="{triage.pk}" selected>{label}</option>' in picker
    assert f"Billing (#{billing.pk} · offline:demo)" in picker
    assert 'name="cfg_agent"' not in page  # the name is a label saving writes

    save = owner_client.post(
        _url("workflow_step_save", workflow_id=workflow.pk, step_id="reply"),
        {"base": 1, "id": "reply", "cfg_agent_id": billing.pk, "cfg_prompt": "{{ input.text }}"},
        **HX,
    )
    assert save.status_code == 200, save.content
    with schema_context(world.workspace_a.schema_name):
        latest = Workflow.objects.get(pk=workflow.pk).versions.order_by("-number").first()
        assert latest is not None
        assert latest.definition["steps"][0]["config"] == {
            "agent_id": billing.pk,
            "agent": "Billing",
            "prompt": "{{ input.text }}",
        }
