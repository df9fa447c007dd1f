"""The template library: every template loads, validates in a workspace once its agents and
sub-workflows exist, and runs to success on the offline model (engine executed inline,
approvals approved, webhook waits resumed)."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django_tenants.utils import schema_context

from agents.models import Agent, ModelAlias
from core.exceptions import NotFound
from tenants.models import Workspace
from tenants.permissions import Access
from tests.helpers.personas import access_of
from tests.helpers.workflows import drain
from workflows import library, runs, validators
from workflows.definition import NODE_TYPES
from workflows.demo import DEMO_TEMPLATES
from workflows.library import Template, TemplateFileError, prepare
from workflows.models import RUN_FINISHED, StepRun, StepStatus, Workflow, WorkflowRun

pytestmark = pytest.mark.django_db

TEMPLATES = library.templates()
# What a metrics job would post to the weekly report's resume URL.
WEBHOOK_PAYLOADS: dict[str, Any] = {
    "weekly-report": {"this_week": 120, "last_week": 100, "signups": 37},
}


def finish(run: WorkflowRun, access: Access, key: str) -> WorkflowRun:
    """Drive the run to its end as people and systems would: approve what waits for a
    decision, post to what waits for a webhook."""
    for _ in range(20):
        drain()
        run.refresh_from_db()
        if run.status in RUN_FINISHED:
            return run
        waiting = StepRun.objects.filter(status=StepStatus.WAITING)
        for step in waiting.filter(node_type="approval"):
            runs.approval_decide(access=access, step=step, approved=True, comment="Looks right")
        for step in waiting.filter(node_type="webhook_wait"):
            runs.webhook_wait_resume(
                token=step.resume_token, payload=WEBHOOK_PAYLOADS.get(key, {"ok": True})
            )
    raise AssertionError(f"the run did not finish: {run.status}")


# --- the catalogue ----------------------------------------------------------------------------


def test_the_library_covers_every_node_type_across_categories() -> None:
    keys = [t.key for t in TEMPLATES]
    assert len(keys) >= 14
    assert len(set(keys)) == len(keys)
    assert len({t.name for t in TEMPLATES}) == len(TEMPLATES)
    assert len(library.categories()) >= 6
    used = set().union(*(t.node_types for t in TEMPLATES))
    assert used == set(NODE_TYPES)


def test_sub_workflows_and_agents_named_by_templates_can_be_provided() -> None:
    for template in TEMPLATES:
        for name in template.workflows:
            assert library.template_named(name) is not None, (template.key, name)
        for name in template.agents:  # the specs `template_prepare` creates agents from
            assert prepare.demo_agent_spec(name) is not None, (template.key, name)


def test_template_get_returns_a_copy_and_refuses_unknown_keys() -> None:
    template = library.template_get("support-triage")
    assert template.name == "Support ticket triage"
    assert template.category == "Support"
    template.definition["steps"].clear()
    assert library.template_get("support-triage").definition["steps"]
    with pytest.raises(NotFound, match="no workflow template 'nope'"):
        library.template_get("nope")


@pytest.mark.parametrize(
    ("file_name", "text", "problem"),
    [
        ("Bad Key.yaml", "name: x", "file name"),
        ("ok.yaml", "- a list", "mapping at the top"),
        ("ok.yaml", "name: x\ncategory: y\ndescription: z\ndefinition: {}\n", "missing"),
        (
            "ok.yaml",
            "name: x\ncategory: y\ndescription: z\ndefinition: {}\nexample_inputs: {}\nextra: 1",
            "unknown",
        ),
        (
            "ok.yaml",
            "name: ''\ncategory: y\ndescription: z\ndefinition: {}\nexample_inputs: {}",
            "'name'",
        ),
    ],
)
def test_a_malformed_template_file_is_refused_with_its_name(
    tmp_path: Path, file_name: str, text: str, problem: str
) -> None:
    path = tmp_path / file_name
    path.write_text(text)
    with pytest.raises(TemplateFileError, match=problem):
        library._load(path)  # noqa: SLF001 (no public way to load one file)


# --- in a workspace ---------------------------------------------------------------------------


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.key)
def test_every_template_validates_once_prepared(
    template: Template, owner_access: Access, in_alpha: None
) -> None:
    prepare.template_prepare(access=owner_access, template=template)
    assert validators.validate(template.definition) == []
    assert prepare.template_prepare(access=owner_access, template=template) == []


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.key)
def test_every_template_runs_to_success_on_the_offline_model(
    template: Template, owner_access: Access, in_alpha: None
) -> None:
    prepare.template_prepare(access=owner_access, template=template)
    workflow = prepare.workflow_from_template(access=owner_access, key=template.key)
    run = runs.run_start(
        workflow=workflow,
        inputs=template.example_inputs,
        trigger=WorkflowRun.TriggerKind.MANUAL,
        access=owner_access,
    )
    run = finish(run, owner_access, template.key)
    assert run.status == "succeeded", run.error
    assert run.output, "the run has an output"
    empty = [k for k, v in run.output.items() if v is None or v == "" or v == []]
    assert empty == [], f"empty outputs: {empty}"
    assert workflow.template_key == template.key


def test_prepare_creates_the_model_alias_the_agents_and_the_sub_workflow(
    owner_access: Access, in_alpha: None
) -> None:
    notes = prepare.template_prepare(
        access=owner_access, template=library.template_get("support-triage")
    )
    assert ModelAlias.objects.get(name="default").targets.get().kind == "offline"
    agent = Agent.objects.get(name="Support triage")
    assert agent.current_version.model == "default"
    assert "knowledge_search" not in agent.current_version.tools
    assert any("Created the agent “Support triage”" in n for n in notes)

    notes = prepare.template_prepare(
        access=owner_access, template=library.template_get("release-notes")
    )
    child = Workflow.objects.get(name="Translation QA")
    assert child.template_key == "translation-qa"
    assert child.active_version is not None
    assert notes == ["Created the workflow “Translation QA”, which this one runs."]


def test_a_member_gets_a_note_instead_of_a_new_model_alias(world, in_alpha: None) -> None:
    member = access_of(world.member, world.workspace_a)
    notes = prepare.template_prepare(
        access=member, template=library.template_get("meeting-action-items")
    )
    assert not ModelAlias.objects.filter(name="default").exists()
    assert notes
    assert "ask an admin" in notes[0]


# --- the demo seed ----------------------------------------------------------------------------


def test_the_demo_seed_adds_template_workflows_with_one_finished_run_each_once() -> None:
    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())

    demo = Workspace.objects.get(slug="demo")
    with schema_context(demo.schema_name):
        seeded = {w.template_key: w for w in Workflow.objects.all()}
        assert set(seeded) == set(DEMO_TEMPLATES)
        for key, workflow in seeded.items():
            statuses = list(workflow.runs.values_list("status", flat=True))
            assert statuses == ["succeeded"], (key, statuses)
        triage = seeded["support-triage"].runs.get()
        assert triage.output["reply"]
