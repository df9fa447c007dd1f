"""The workflow builder pages: list, templates, describe, builder edits (each a new version),
the JSON/YAML view, versions with publish, rollback and diff, export and import, the dashboard
card, and who may see or change what."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from core.exceptions import ValidationFailed
from tenants.models import Membership, Role
from tests.helpers.personas import World, access_of, logged_in, make_user
from workflows import library, runs, services
from workflows.models import Workflow, WorkflowRun, WorkflowVersion

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}

# classify → is_urgent → (true) page → notify
#                      → (false) reply
DEFINITION: dict[str, Any] = {
    "schema_version": 1,
    "inputs": {"ticket": {"type": "string", "required": True}},
    "steps": [
        {
            "id": "classify",
            "type": "transform",
            "name": "Classify",
            "config": {"value": {"urgent": "{{ contains(input.ticket, 'down') }}"}},
        },
        {"id": "is_urgent", "type": "condition", "config": {"expression": "steps.classify.urgent"}},
        {"id": "page", "type": "transform", "config": {"value": "paging on-call"}},
        {"id": "notify", "type": "transform", "config": {"value": "{{ steps.page }}"}},
        {"id": "reply", "type": "transform", "config": {"value": "we are on it"}},
    ],
    "edges": [
        {"from": "classify", "to": "is_urgent"},
        {"from": "is_urgent", "to": "page", "branch": "true"},
        {"from": "page", "to": "notify"},
        {"from": "is_urgent", "to": "reply", "branch": "false"},
    ],
}


def _url(name: str, slug: str = "alpha", **kwargs: Any) -> str:
    return reverse(name, kwargs={"workspace_slug": slug, **kwargs})


@pytest.fixture
def workflow(world: World) -> Workflow:
    with schema_context(world.workspace_a.schema_name):
        return services.workflow_create(
            access=access_of(world.owner, world.workspace_a),
            name="Ticket triage",
            description="Pages on-call for outages.",
            definition=DEFINITION,
        )


def _versions(world: World, workflow: Workflow) -> list[WorkflowVersion]:
    with schema_context(world.workspace_a.schema_name):
        return list(WorkflowVersion.objects.filter(workflow=workflow).order_by("number"))


def _latest(world: World, workflow: Workflow) -> WorkflowVersion:
    return _versions(world, workflow)[-1]


def _active_number(world: World, workflow: Workflow) -> int:
    with schema_context(world.workspace_a.schema_name):
        refreshed = Workflow.objects.select_related("active_version").get(pk=workflow.pk)
        assert refreshed.active_version is not None
        return refreshed.active_version.number


def _step_post(step: dict[str, Any], base: int, **extra: Any) -> dict[str, Any]:
    """What the step form posts for `step` (a transform or condition step)."""
    data: dict[str, Any] = {"base": base, "id": step["id"], "name": step.get("name", "")}
    for key, value in step["config"].items():
        data[f"cfg_{key}"] = json.dumps(value) if isinstance(value, dict) else value
    data.update(extra)
    return data


# ------------------------------------------------------------------ list and start options


def test_empty_list_offers_the_four_ways_to_start(world: World, owner_client: Client) -> None:
    html = owner_client.get(_url("workflow_list")).content.decode()
    assert "No workflows yet" in html
    for name in ("workflow_templates", "workflow_describe", "workflow_create", "workflow_import"):
        assert _url(name) in html


def test_list_shows_active_version_run_count_and_last_run(
    world: World, owner_client: Client, workflow: Workflow, django_assert_max_num_queries: Any
) -> None:
    with schema_context(world.workspace_a.schema_name):
        for _ in range(2):
            runs.run_start(workflow=workflow, inputs={"ticket": "site down"}, trigger="manual")
        for index in range(5):  # more workflows must not mean more queries
            services.workflow_create(
                access=access_of(world.owner, world.workspace_a),
                name=f"Other {index}",
                definition=DEFINITION,
            )
    with django_assert_max_num_queries(15):
        response = owner_client.get(_url("workflow_list"))
    html = response.content.decode()
    assert "Ticket triage" in html
    assert "Other 4" in html
    row = html.split("Ticket triage", 1)[1].split("</tr>", 1)[0]
    assert "v1" in row
    assert "Queued" in row
    assert '<td class="col-num">2</td>' in row


def test_archived_workflows_move_to_the_archived_tab_and_can_be_restored(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    owner_client.post(_url("workflow_archive", workflow_id=workflow.pk))
    row_link = f'href="{_url("workflow_detail", workflow_id=workflow.pk)}"'
    listed = owner_client.get(_url("workflow_list")).content.decode()
    assert "archived" in listed  # the toast names it
    assert row_link not in listed  # no row
    archived = owner_client.get(_url("workflow_list") + "?archived=1").content.decode()
    assert row_link in archived
    page = owner_client.get(_url("workflow_detail", workflow_id=workflow.pk)).content.decode()
    assert "Archived" in page
    assert "Add step" not in page  # read-only while archived
    owner_client.post(_url("workflow_restore", workflow_id=workflow.pk))
    assert "Ticket triage" in owner_client.get(_url("workflow_list")).content.decode()


def test_blank_workflow_opens_the_builder_ready_to_add_a_step(
    world: World, owner_client: Client
) -> None:
    response = owner_client.post(_url("workflow_create"), {"name": "From scratch"})
    assert response.status_code == 302
    assert "add=1" in response["Location"]
    page = owner_client.get(response["Location"]).content.decode()
    assert "Add a step" in page
    assert 'name="cfg_prompt"' in page  # an LLM prompt step first


# ------------------------------------------------------------------ templates and describe


def test_gallery_groups_templates_by_category_and_use_creates_the_workflow(
    world: World, owner_client: Client
) -> None:
    templates = library.templates()
    html = owner_client.get(_url("workflow_templates")).content.decode()
    for category in {t.category for t in templates}:
        assert category in html
    first = templates[0]
    assert first.name in html
    assert first.description[:40] in html
    assert html.count('class="wf-mini"') == len(templates)

    response = owner_client.post(_url("workflow_template_use", key=first.key))
    assert response.status_code == 302
    with schema_context(world.workspace_a.schema_name):
        created = Workflow.objects.get(template_key=first.key)
        version = created.versions.get()
    assert version.source == WorkflowVersion.Source.TEMPLATE
    assert response["Location"] == _url("workflow_detail", workflow_id=created.pk)
    assert owner_client.post(_url("workflow_template_use", key="no-such")).status_code == 404


def test_describe_shows_a_validated_draft_then_creates_a_generated_workflow(
    world: World, owner_client: Client
) -> None:
    description = "When a support ticket arrives, classify its urgency and draft a reply."
    response = owner_client.post(_url("workflow_describe"), {"description": description}, **HX)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="describe-result"' in html
    assert "<svg" in html
    assert "Valid" in html
    draft = response.context["draft"]
    assert draft["steps"]

    created = owner_client.post(
        _url("workflow_describe_create"),
        {"name": "Support replies", "description": description, "definition": json.dumps(draft)},
    )
    assert created.status_code == 302
    with schema_context(world.workspace_a.schema_name):
        workflow = Workflow.objects.get(name="Support replies")
        assert workflow.versions.get().source == WorkflowVersion.Source.GENERATED


def test_describe_create_refuses_a_broken_draft_and_names_the_problem(
    world: World, owner_client: Client
) -> None:
    broken = {**DEFINITION, "edges": [*DEFINITION["edges"], {"from": "reply", "to": "ghost"}]}
    response = owner_client.post(
        _url("workflow_describe_create"),
        {"name": "Broken", "definition": json.dumps(broken)},
    )
    assert response.status_code == 400
    assert "ghost" in response.content.decode()
    with schema_context(world.workspace_a.schema_name):
        assert not Workflow.objects.filter(name="Broken").exists()


# ------------------------------------------------------------------ the builder


def test_builder_draws_the_diagram_with_branch_labels_and_opens_a_step(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    html = owner_client.get(_url("workflow_detail", workflow_id=workflow.pk)).content.decode()
    assert html.count('class="wf-node wf-node--') == 5
    assert ">true</text>" in html
    assert ">false</text>" in html
    assert 'data-step="is_urgent"' in html

    panel = owner_client.get(
        _url("workflow_detail", workflow_id=workflow.pk) + "?step=is_urgent", **HX
    )
    body = panel.content.decode()
    assert body.lstrip().startswith('<div id="builder"')  # only the region htmx swaps
    assert 'name="cfg_expression"' in body
    assert "steps.classify.urgent" in body
    assert "is-selected" in body


def test_editing_a_step_saves_a_draft_version_and_publish_makes_it_active(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    url = _url("workflow_step_save", workflow_id=workflow.pk, step_id="page")
    step = {"id": "page", "config": {"value": "paging the on-call engineer"}}
    response = owner_client.post(url, _step_post(step, base=1, action="save"), **HX)
    assert response.status_code == 200
    assert "Saved as version 2" in response.content.decode()
    latest = _latest(world, workflow)
    assert latest.number == 2
    assert latest.source == WorkflowVersion.Source.EDITOR
    assert latest.definition["steps"][2]["config"]["value"] == "paging the on-call engineer"
    assert _active_number(world, workflow) == 1  # a draft until published

    step["config"]["value"] = "page now"
    owner_client.post(url, _step_post(step, base=2, action="publish"), **HX)
    assert _active_number(world, workflow) == 3


def test_renaming_a_step_carries_its_edges(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    url = _url("workflow_step_save", workflow_id=workflow.pk, step_id="reply")
    step = {"id": "answer", "name": "Answer", "config": {"value": "we are on it"}}
    owner_client.post(url, _step_post(step, base=1))
    edges = _latest(world, workflow).definition["edges"]
    assert {"from": "is_urgent", "to": "answer", "branch": "false"} in edges


def test_a_problem_is_saved_as_a_draft_and_shown_beside_its_field(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    url = _url("workflow_step_save", workflow_id=workflow.pk, step_id="is_urgent")
    step = {"id": "is_urgent", "config": {"expression": "steps.notify.done"}}  # downstream
    response = owner_client.post(url, _step_post(step, base=1), **HX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Saved as version 2 (draft" in html
    assert "Version 2 cannot be published or run until this problem is fixed" in html
    assert _latest(world, workflow).number == 2
    assert _active_number(world, workflow) == 1

    # Opening the step shows the validators' message beside its field, and marks the node.
    page = owner_client.get(_url("workflow_detail", workflow_id=workflow.pk) + "?step=is_urgent")
    errors = page.context["forms"]["step"].errors
    assert "notify" in " ".join(errors["cfg_expression"])
    assert 'has-problem" href' in page.content.decode()


def test_save_and_publish_with_a_problem_saves_nothing_and_says_why(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    url = _url("workflow_step_save", workflow_id=workflow.pk, step_id="is_urgent")
    step = {"id": "is_urgent", "config": {"expression": "steps.notify.done"}}
    response = owner_client.post(url, _step_post(step, base=1, action="publish"), **HX)
    assert response.status_code == 400
    assert "Nothing was saved" in response.content.decode()
    errors = response.context["forms"]["step"].errors
    assert "notify" in " ".join(errors["cfg_expression"])
    assert len(_versions(world, workflow)) == 1


def test_a_required_setting_may_be_left_empty_in_a_draft(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    url = _url("workflow_step_save", workflow_id=workflow.pk, step_id="reply")
    response = owner_client.post(url, _step_post({"id": "reply", "config": {"value": ""}}, base=1))
    assert response.status_code == 302
    latest = _latest(world, workflow)
    assert latest.number == 2
    assert latest.definition["steps"][4]["config"] == {}
    page = owner_client.get(_url("workflow_detail", workflow_id=workflow.pk) + "?step=reply")
    assert page.context["forms"]["step"].errors["cfg_value"] == ["is required"]
    label = page.content.decode().split('for="id_cfg_value">', 1)[1].split("</label>", 1)[0]
    assert "(optional)" not in label  # still asked for: only a draft may lack it


def test_publishing_a_draft_with_problems_is_refused_with_the_validators_message(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    owner_client.post(
        _url("workflow_edge_delete", workflow_id=workflow.pk),
        {"base": 1, "source": "is_urgent", "target": "reply", "branch": "false"},
    )
    response = owner_client.post(
        _url("workflow_version_publish", workflow_id=workflow.pk, number=2), {"next": "builder"}
    )
    page = owner_client.get(response["Location"]).content.decode()
    assert "The workflow definition is not valid: steps[4] (reply): has no incoming edge" in page
    assert _active_number(world, workflow) == 1


def test_an_edit_made_on_an_old_version_is_refused(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    url = _url("workflow_step_save", workflow_id=workflow.pk, step_id="page")
    owner_client.post(url, _step_post({"id": "page", "config": {"value": "one"}}, base=1))
    stale = owner_client.post(
        url, _step_post({"id": "page", "config": {"value": "two"}}, base=1), **HX
    )
    assert stale.status_code == 400
    assert "Someone saved version 2" in stale.content.decode()
    assert len(_versions(world, workflow)) == 2


def test_deleting_a_step_someone_already_deleted_says_they_saved_first(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    url = _url("workflow_step_delete", workflow_id=workflow.pk, step_id="page")
    assert owner_client.post(url, {"base": 1, "reconnect": "on"}).status_code == 302
    stale = owner_client.post(url, {"base": 1, "reconnect": "on"}, **HX)
    assert stale.status_code == 400
    # The conflict, not "there is no step" from the edit applied to version 2.
    assert "Someone saved version 2 since you opened version 1" in stale.content.decode()
    assert len(_versions(world, workflow)) == 2


def test_add_step_inserted_after_a_branch(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    form = owner_client.get(
        _url("workflow_detail", workflow_id=workflow.pk) + "?add=1&type=transform", **HX
    ).content.decode()
    assert 'value="is_urgent|true"' in form  # the branches are offered as places to attach

    response = owner_client.post(
        _url("workflow_step_add", workflow_id=workflow.pk),
        {
            "type": "transform",
            "base": 1,
            "id": "log",
            "name": "Log it",
            "cfg_value": "logged",
            "after": "is_urgent|true",
            "insert": "on",
            "action": "save",
        },
        **HX,
    )
    assert response.status_code == 200
    definition = _latest(world, workflow).definition
    assert definition["steps"][-1] == {
        "id": "log",
        "type": "transform",
        "name": "Log it",
        "config": {"value": "logged"},
    }
    assert {"from": "is_urgent", "to": "log", "branch": "true"} in definition["edges"]
    assert {"from": "log", "to": "page"} in definition["edges"]
    assert not any(e["from"] == "is_urgent" and e["to"] == "page" for e in definition["edges"])


APPROVAL_LAST: dict[str, Any] = {
    "schema_version": 1,
    "inputs": {"text": {"type": "string", "required": True}},
    "steps": [
        {"id": "draft", "type": "transform", "config": {"value": "{{ input.text }}"}},
        {"id": "review", "type": "approval", "config": {"message": "{{ steps.draft }}"}},
    ],
    "edges": [{"from": "draft", "to": "review"}],
}


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        ({"id": "review", "type": "approval", "config": {"message": "ok?"}}, "review|approved"),
        ({"id": "check", "type": "condition", "config": {"expression": "True"}}, "check|true"),
    ],
)
def test_a_step_added_after_a_branching_step_goes_on_its_natural_branch(
    world: World, owner_client: Client, last: dict[str, Any], expected: str
) -> None:
    definition = {**APPROVAL_LAST, "steps": [APPROVAL_LAST["steps"][0], last]}
    definition["edges"] = [{"from": "draft", "to": last["id"]}]
    with schema_context(world.workspace_a.schema_name):
        workflow = services.workflow_create(
            access=access_of(world.owner, world.workspace_a), name="Review", definition=definition
        )
    page = owner_client.get(_url("workflow_detail", workflow_id=workflow.pk) + "?add=1")
    assert page.context["forms"]["add"]["after"].value() == expected
    assert f'<option value="{expected}" selected>' in page.content.decode()

    # Adding with what the form offers wires the new step to that branch.
    form = page.context["forms"]["add"]
    owner_client.post(
        _url("workflow_step_add", workflow_id=workflow.pk),
        {
            "type": "llm",
            "base": 1,
            "id": "publish_it",
            "cfg_model": "default",
            "cfg_prompt": "Publish {{ input.text }}",
            "after": form["after"].value(),
            "insert": "on",
            "action": "save",
        },
    )
    source, branch = expected.split("|")
    edges = _latest(world, workflow).definition["edges"]
    assert {"from": source, "to": "publish_it", "branch": branch} in edges


def test_delete_step_reconnects_its_neighbours(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    # notify reads steps.page; point it elsewhere first so that deleting page is valid.
    owner_client.post(
        _url("workflow_step_save", workflow_id=workflow.pk, step_id="notify"),
        _step_post({"id": "notify", "config": {"value": "{{ input.ticket }}"}}, base=1),
    )
    response = owner_client.post(
        _url("workflow_step_delete", workflow_id=workflow.pk, step_id="page"),
        {"base": 2, "reconnect": "on", "action": "save"},
        **HX,
    )
    assert response.status_code == 200
    definition = _latest(world, workflow).definition
    assert "page" not in [s["id"] for s in definition["steps"]]
    assert {"from": "is_urgent", "to": "notify", "branch": "true"} in definition["edges"]


def test_deleting_a_step_that_others_read_leaves_a_draft_naming_the_reader(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    response = owner_client.post(
        _url("workflow_step_delete", workflow_id=workflow.pk, step_id="page"),
        {"base": 1, "reconnect": "on"},
        **HX,
    )
    assert response.status_code == 200
    assert "cannot be published or run" in response.content.decode()
    assert 'data-step="notify"' in response.content.decode()
    problems = " ".join(i.text for i in response.context["problems"])
    assert "notify" in problems
    assert "page" in problems
    assert _latest(world, workflow).number == 2
    assert _active_number(world, workflow) == 1


def test_connect_and_remove_an_edge(world: World, owner_client: Client, workflow: Workflow) -> None:
    owner_client.post(
        _url("workflow_edge_add", workflow_id=workflow.pk),
        {"base": 1, "source": "reply", "target": "notify", "action": "save"},
    )
    assert {"from": "reply", "to": "notify"} in _latest(world, workflow).definition["edges"]
    owner_client.post(
        _url("workflow_edge_delete", workflow_id=workflow.pk),
        {"base": 2, "source": "reply", "target": "notify", "branch": ""},
    )
    definition = _latest(world, workflow).definition
    assert {"from": "reply", "to": "notify"} not in definition["edges"]
    assert len(_versions(world, workflow)) == 3


def test_a_wrong_edge_can_be_removed_before_the_right_one_exists(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    # reply hangs off is_urgent's false branch; the user wants it after notify instead.
    # Removing the edge first leaves reply as a second entry step: saved as a draft that
    # says so, not refused.
    removed = owner_client.post(
        _url("workflow_edge_delete", workflow_id=workflow.pk),
        {"base": 1, "source": "is_urgent", "target": "reply", "branch": "false"},
        **HX,
    )
    assert removed.status_code == 200
    html = removed.content.decode()
    assert "Version 2 cannot be published or run until this problem is fixed" in html
    assert "entry steps now: classify, reply" in html
    assert '<a class="wf-node wf-node--transform has-problem"' in html
    edges = _latest(world, workflow).definition["edges"]
    assert not any(e["to"] == "reply" for e in edges)

    connected = owner_client.post(
        _url("workflow_edge_add", workflow_id=workflow.pk),
        {"base": 2, "source": "notify", "target": "reply", "action": "publish"},
        **HX,
    )
    assert connected.status_code == 200
    assert "cannot be published" not in connected.content.decode()
    assert "has-problem" not in connected.content.decode()
    assert _active_number(world, workflow) == 3


def test_run_inputs_are_edited_with_a_form(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    data = {
        "base": 1,
        "inputs-TOTAL_FORMS": 2,
        "inputs-INITIAL_FORMS": 1,
        "inputs-0-name": "ticket",
        "inputs-0-type": "string",
        "inputs-0-required": "on",
        "inputs-0-description": "The customer's message",
        "inputs-1-name": "priority",
        "inputs-1-type": "integer",
        "inputs-1-default": "3",
    }
    owner_client.post(_url("workflow_inputs_save", workflow_id=workflow.pk), data)
    assert _latest(world, workflow).definition["inputs"] == {
        "ticket": {"type": "string", "required": True, "description": "The customer's message"},
        "priority": {"type": "integer", "required": False, "default": 3},
    }


def test_details_are_saved_without_a_new_version(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    owner_client.post(
        _url("workflow_settings", workflow_id=workflow.pk),
        {"name": "Triage v2", "description": "New words", "category": "Support"},
    )
    with schema_context(world.workspace_a.schema_name):
        workflow.refresh_from_db()
    assert (workflow.name, workflow.category) == ("Triage v2", "Support")
    assert len(_versions(world, workflow)) == 1


# ------------------------------------------------------------------ Run and the header


def test_run_from_the_builder_runs_the_version_on_screen(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    url = _url("workflow_step_save", workflow_id=workflow.pk, step_id="reply")
    owner_client.post(url, _step_post({"id": "reply", "config": {"value": "second"}}, base=1))
    detail = owner_client.get(_url("workflow_detail", workflow_id=workflow.pk))
    run_url = detail.context["links"]["run"]
    assert run_url == _url("workflow_run_start", workflow_id=workflow.pk) + "?version=2"
    assert f'href="{run_url}"' in detail.content.decode()
    # An older version on screen runs that one.
    old = owner_client.get(_url("workflow_detail", workflow_id=workflow.pk) + "?version=1")
    assert old.context["links"]["run"].endswith("?version=1")

    # The run form opens on that version, and starting it runs v2 (v1 is still the active one).
    form = owner_client.get(run_url)
    assert form.context["selected"].number == 2
    started = owner_client.post(run_url, {"version": "2", "input_ticket": "site down"})
    assert started.status_code == 302
    with schema_context(world.workspace_a.schema_name):
        run = WorkflowRun.objects.get()
        assert run.version.number == 2
    assert _active_number(world, workflow) == 1


def test_a_draft_with_problems_cannot_run_and_the_run_form_says_why(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    owner_client.post(
        _url("workflow_edge_delete", workflow_id=workflow.pk),
        {"base": 1, "source": "is_urgent", "target": "reply", "branch": "false"},
    )
    run_url = _url("workflow_run_start", workflow_id=workflow.pk) + "?version=2"
    form = owner_client.get(run_url)
    html = form.content.decode()
    assert "Version 2 cannot run until this problem is fixed" in html
    assert "entry steps now: classify, reply" in html
    assert 'class="btn btn--primary" disabled>' in html  # Start run

    refused = owner_client.post(run_url, {"version": "2", "input_ticket": "site down"})
    assert refused.status_code == 400
    assert "Version 2 cannot run until it is fixed" in refused.content.decode()
    with schema_context(world.workspace_a.schema_name):
        assert not WorkflowRun.objects.exists()
        with pytest.raises(ValidationFailed) as raised:
            runs.run_start(
                workflow=Workflow.objects.get(pk=workflow.pk),
                inputs={"ticket": "x"},
                trigger="api",
                version=WorkflowVersion.objects.get(workflow=workflow, number=2),
            )
    assert any("reply" in text for text in raised.value.fields["definition"])


def test_the_header_follows_an_htmx_save(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    url = _url("workflow_step_save", workflow_id=workflow.pk, step_id="reply")
    response = owner_client.post(
        url, _step_post({"id": "reply", "config": {"value": "second"}}, base=1), **HX
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="builder"')
    header = html.split('id="wf-header" hx-swap-oob="true"', 1)[1]  # swapped out of band
    assert "active v1" in header
    assert "draft v2" in header
    assert "Run v2" in header
    assert 'class="wf-tabs"' not in html  # only the badges and actions ride along


# ------------------------------------------------------------------ JSON / YAML view


def test_json_view_edits_the_whole_definition(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    page = owner_client.get(_url("workflow_source", workflow_id=workflow.pk))
    text = page.context["form"]["text"].value()
    document = json.loads(text)
    document["steps"][4]["config"]["value"] = "edited as JSON"
    response = owner_client.post(
        _url("workflow_source", workflow_id=workflow.pk),
        {"base": 1, "format": "json", "text": json.dumps(document), "note": "Reworded"},
    )
    assert response.status_code == 302
    latest = _latest(world, workflow)
    assert latest.note == "Reworded"
    assert latest.definition["steps"][4]["config"]["value"] == "edited as JSON"


def test_json_view_names_the_line_and_column_of_a_syntax_error(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    response = owner_client.post(
        _url("workflow_source", workflow_id=workflow.pk),
        {"base": 1, "format": "json", "text": '{\n  "steps": [\n    oops\n  ]\n}'},
    )
    assert response.status_code == 400
    assert "line 3" in response.content.decode()
    assert len(_versions(world, workflow)) == 1


def test_yaml_view_names_the_step_and_field_of_a_validation_error(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    page = owner_client.get(_url("workflow_source", workflow_id=workflow.pk) + "?format=yaml")
    document = yaml.safe_load(page.context["form"]["text"].value())
    document["steps"][1]["config"] = {}  # a condition without its expression
    response = owner_client.post(
        _url("workflow_source", workflow_id=workflow.pk),
        {"base": 1, "format": "yaml", "text": yaml.safe_dump(document)},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "is_urgent" in html
    assert "expression" in html
    assert len(_versions(world, workflow)) == 1


# ------------------------------------------------------------------ versions


def test_versions_publish_rollback_and_diff(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    url = _url("workflow_step_save", workflow_id=workflow.pk, step_id="reply")
    owner_client.post(url, _step_post({"id": "reply", "config": {"value": "second"}}, base=1))
    owner_client.post(url, _step_post({"id": "reply", "config": {"value": "third"}}, base=2))

    page = owner_client.get(_url("workflow_versions", workflow_id=workflow.pk))
    html = page.content.decode()
    assert "v3" in html
    assert "Edited step reply" in html
    assert "owner@alpha.test" in html
    assert "Roll back to this" in html
    # By default the latest change is shown: v2 → v3, with its lines highlighted.
    assert 'class="is-removed"' in html
    assert 'class="is-added"' in html
    assert "second" in html
    assert "third" in html

    owner_client.post(_url("workflow_version_publish", workflow_id=workflow.pk, number=2))
    assert _active_number(world, workflow) == 2

    owner_client.post(_url("workflow_version_rollback", workflow_id=workflow.pk, number=1))
    latest = _latest(world, workflow)
    assert latest.number == 4
    assert latest.source == WorkflowVersion.Source.ROLLBACK
    assert latest.definition == _versions(world, workflow)[0].definition
    assert _active_number(world, workflow) == 4

    diff = owner_client.get(_url("workflow_versions", workflow_id=workflow.pk) + "?old=1&new=3")
    assert "reply" in diff.content.decode()
    assert diff.context["diff"] is not None


def test_an_older_version_is_shown_read_only_in_the_builder(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    url = _url("workflow_step_save", workflow_id=workflow.pk, step_id="reply")
    owner_client.post(url, _step_post({"id": "reply", "config": {"value": "second"}}, base=1))
    html = owner_client.get(
        _url("workflow_detail", workflow_id=workflow.pk) + "?version=1&step=reply"
    ).content.decode()
    assert "read-only" in html
    assert "we are on it" in html
    assert 'name="cfg_value"' not in html


# ------------------------------------------------------------------ export and import


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_export_then_import_gives_the_same_definition(
    world: World, owner_client: Client, workflow: Workflow, fmt: str
) -> None:
    exported = owner_client.get(_url("workflow_export", workflow_id=workflow.pk) + f"?format={fmt}")
    assert exported.status_code == 200
    assert f'filename="ticket-triage-v1.{fmt}"' in exported["Content-Disposition"]
    upload = SimpleUploadedFile(f"triage.{fmt}", exported.content)
    response = owner_client.post(
        _url("workflow_import"), {"name": f"Imported {fmt}", "file": upload}
    )
    assert response.status_code == 302
    with schema_context(world.workspace_a.schema_name):
        imported = Workflow.objects.get(name=f"Imported {fmt}")
        version = imported.versions.get()
    assert version.source == WorkflowVersion.Source.IMPORT
    assert version.definition == _latest(world, workflow).definition


def test_import_as_a_new_version_of_a_workflow(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    document = json.loads(json.dumps(DEFINITION))
    document["steps"][4]["config"]["value"] = "imported text"
    response = owner_client.post(
        _url("workflow_import_version", workflow_id=workflow.pk),
        {"text": json.dumps(document), "format": "json", "action": "publish"},
    )
    assert response.status_code == 302
    latest = _latest(world, workflow)
    assert latest.number == 2
    assert latest.source == WorkflowVersion.Source.IMPORT
    assert _active_number(world, workflow) == 2


def test_import_of_an_invalid_file_imports_nothing_and_lists_the_problems(
    world: World, owner_client: Client
) -> None:
    document = {**DEFINITION, "edges": [{"from": "classify", "to": "nowhere"}]}
    response = owner_client.post(
        _url("workflow_import"), {"name": "Bad", "text": json.dumps(document)}
    )
    assert response.status_code == 400
    assert "nowhere" in response.content.decode()
    with schema_context(world.workspace_a.schema_name):
        assert not Workflow.objects.filter(name="Bad").exists()


# ------------------------------------------------------------------ dashboard card


def test_dashboard_card_lists_recent_workflows_and_runs(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    dashboard = owner_client.get(_url("workspace_dashboard")).content.decode()
    assert _url("workflow_dashboard_card") in dashboard
    assert "being finished" not in dashboard
    with schema_context(world.workspace_a.schema_name):
        run = runs.run_start(workflow=workflow, inputs={"ticket": "x"}, trigger="manual")
    card = owner_client.get(_url("workflow_dashboard_card"), **HX).content.decode()
    assert "Ticket triage" in card
    assert f"#{run.pk}" in card
    assert "Queued" in card


# ------------------------------------------------------------------ permissions


def test_viewers_see_everything_read_only(world: World, workflow: Workflow) -> None:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    client = logged_in(viewer)
    detail = _url("workflow_detail", workflow_id=workflow.pk)
    for url in (
        _url("workflow_list"),
        _url("workflow_templates"),
        detail,
        detail + "?step=is_urgent",
        _url("workflow_source", workflow_id=workflow.pk),
        _url("workflow_versions", workflow_id=workflow.pk),
        _url("workflow_export", workflow_id=workflow.pk),
        _url("workflow_dashboard_card"),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert b'name="action" value="publish"' not in response.content, url
    assert b"Add step" not in client.get(detail).content
    for url in (_url("workflow_create"), _url("workflow_describe"), _url("workflow_import")):
        assert client.get(url).status_code == 403, url
    post = _step_post({"id": "page", "config": {"value": "x"}}, base=1)
    assert (
        client.post(_url("workflow_step_save", workflow_id=workflow.pk, step_id="page"), post)
    ).status_code == 403
    assert (
        client.post(
            _url("workflow_version_rollback", workflow_id=workflow.pk, number=1)
        ).status_code
        == 403
    )
    assert len(_versions(world, workflow)) == 1


def _every_url(workflow_id: int, slug: str = "alpha") -> list[tuple[str, str]]:
    wf = {"workflow_id": workflow_id}
    return [
        ("get", _url("workflow_list", slug)),
        ("get", _url("workflow_create", slug)),
        ("post", _url("workflow_create", slug)),
        ("get", _url("workflow_templates", slug)),
        ("post", _url("workflow_template_use", slug, key="support-triage")),
        ("get", _url("workflow_describe", slug)),
        ("post", _url("workflow_describe", slug)),
        ("post", _url("workflow_describe_create", slug)),
        ("get", _url("workflow_import", slug)),
        ("post", _url("workflow_import", slug)),
        ("get", _url("workflow_dashboard_card", slug)),
        ("get", _url("workflow_detail", slug, **wf)),
        ("post", _url("workflow_settings", slug, **wf)),
        ("post", _url("workflow_archive", slug, **wf)),
        ("post", _url("workflow_restore", slug, **wf)),
        ("post", _url("workflow_step_add", slug, **wf)),
        ("post", _url("workflow_step_save", slug, step_id="page", **wf)),
        ("post", _url("workflow_step_delete", slug, step_id="page", **wf)),
        ("post", _url("workflow_edge_add", slug, **wf)),
        ("post", _url("workflow_edge_delete", slug, **wf)),
        ("post", _url("workflow_inputs_save", slug, **wf)),
        ("get", _url("workflow_source", slug, **wf)),
        ("post", _url("workflow_source", slug, **wf)),
        ("get", _url("workflow_versions", slug, **wf)),
        ("post", _url("workflow_version_publish", slug, number=1, **wf)),
        ("post", _url("workflow_version_rollback", slug, number=1, **wf)),
        ("get", _url("workflow_export", slug, **wf)),
        ("get", _url("workflow_import_version", slug, **wf)),
        ("post", _url("workflow_import_version", slug, **wf)),
    ]


def test_outsiders_get_404_on_every_builder_page_and_action(
    world: World, outsider_client: Client, workflow: Workflow
) -> None:
    for method, url in _every_url(workflow.pk):
        response = getattr(outsider_client, method)(url)
        assert response.status_code == 404, (method, url)
    assert len(_versions(world, workflow)) == 1


def test_a_workflow_of_another_workspace_is_not_found_from_this_one(
    world: World, outsider_client: Client, workflow: Workflow
) -> None:
    """The outsider owns workspace B: asking B's pages for A's workflow id finds nothing."""
    for method, url in _every_url(workflow.pk, slug="bravo"):
        if f"/workflows/{workflow.pk}/" not in url:
            continue
        response = getattr(outsider_client, method)(url)
        assert response.status_code == 404, (method, url)
