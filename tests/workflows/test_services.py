"""Authoring workflows: create, details, archive/restore, immutable versions (save, publish,
roll back), who may do it, what the audit log keeps, and the reads and diff the pages show."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from core.exceptions import Conflict, NotFound, PermissionDenied, ValidationFailed
from tenants.models import AuditEvent, Membership, Role, Workspace
from tenants.permissions import Access
from tests.helpers.personas import World, access_of, make_user
from workflows import selectors, services
from workflows.library import prepare
from workflows.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db

DEFINITION: dict[str, Any] = {
    "schema_version": 1,
    "inputs": {"ticket": {"type": "string", "required": True}},
    "steps": [
        {"id": "classify", "type": "transform", "config": {"value": "{{ input.ticket }}"}},
        {"id": "reply", "type": "transform", "config": {"value": "we are on it"}},
    ],
    "edges": [{"from": "classify", "to": "reply"}],
}


def edited(value: str) -> dict[str, Any]:
    definition = copy.deepcopy(DEFINITION)
    definition["steps"][1]["config"]["value"] = value
    return definition


@pytest.fixture
def viewer_access(world: World) -> Access:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.get_or_create(
        user=viewer, workspace=world.workspace_a, defaults={"role": Role.VIEWER}
    )
    return access_of(viewer, world.workspace_a)


@pytest.fixture
def workflow(in_alpha: None, owner_access: Access) -> Workflow:
    return services.workflow_create(
        access=owner_access, name="Ticket triage", category="Support", definition=DEFINITION
    )


def actions(workspace: Workspace) -> list[str]:
    return list(
        AuditEvent.objects.filter(workspace=workspace, action__startswith="workflow.")
        .order_by("id")
        .values_list("action", flat=True)
    )


# ------------------------------------------------------------------ create


def test_create_publishes_version_one_and_is_audited(
    workflow: Workflow, world: World, owner_access: Access
) -> None:
    version = workflow.versions.get()
    assert (version.number, version.source) == (1, WorkflowVersion.Source.EDITOR)
    assert workflow.active_version_id == version.pk
    assert version.definition == DEFINITION
    assert workflow.created_by_id == version.created_by_id == world.owner.pk
    event = AuditEvent.objects.get(workspace=world.workspace_a, action=services.WORKFLOW_CREATED)
    assert event.actor_label == "owner@alpha.test"
    assert event.target_label == "Ticket triage"


def test_create_reports_bad_details_and_definition_problems_together(
    in_alpha: None, owner_access: Access
) -> None:
    broken = {**DEFINITION, "edges": [{"from": "classify", "to": "ghost"}]}
    with pytest.raises(ValidationFailed) as excinfo:
        services.workflow_create(access=owner_access, name="  ", definition=broken)
    assert set(excinfo.value.fields) == {"name", "definition"}
    assert excinfo.value.fields["definition"][0] == "edges[0].to: there is no step 'ghost'"
    assert not Workflow.objects.exists()


def test_names_are_unique_among_active_workflows_ignoring_case(
    workflow: Workflow, owner_access: Access
) -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        services.workflow_create(access=owner_access, name="ticket TRIAGE", definition=DEFINITION)
    assert excinfo.value.fields["name"] == ["Another workflow is already named “ticket TRIAGE”."]

    services.workflow_archive(access=owner_access, workflow=workflow)
    again = services.workflow_create(
        access=owner_access, name="Ticket triage", definition=DEFINITION
    )
    # Restoring the archived one would make two of the same name: refused, naming the field.
    with pytest.raises(ValidationFailed) as excinfo:
        services.workflow_restore(access=owner_access, workflow=workflow)
    assert "name" in excinfo.value.fields
    # Renaming the archived one resolves it.
    services.workflow_update(
        access=owner_access, workflow=workflow, name="Old triage", description="", category=""
    )
    services.workflow_restore(access=owner_access, workflow=workflow)
    names = {w.name for w in selectors.workflow_list(access=owner_access)}
    assert names == {again.name, "Old triage"}


def test_viewers_and_narrow_api_keys_cannot_change_anything(
    workflow: Workflow, viewer_access: Access, world: World
) -> None:
    version = workflow.versions.get()
    attempts = [
        lambda: services.workflow_create(access=viewer_access, name="X", definition=DEFINITION),
        lambda: services.version_save(
            access=viewer_access, workflow=workflow, definition=edited("x")
        ),
        lambda: services.version_publish(access=viewer_access, version=version),
        lambda: services.version_rollback(access=viewer_access, version=version),
        lambda: services.workflow_update(
            access=viewer_access, workflow=workflow, name="Y", description="", category=""
        ),
        lambda: services.workflow_archive(access=viewer_access, workflow=workflow),
        lambda: services.workflow_restore(access=viewer_access, workflow=workflow),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionDenied):
            attempt()
    from tenants.models import ApiKey

    key = ApiKey(workspace=world.workspace_a, name="runner", prefix="wfk_test", scopes=["run"])
    key_access = Access(workspace=world.workspace_a, api_key=key)
    with pytest.raises(PermissionDenied):
        services.version_save(access=key_access, workflow=workflow, definition=edited("x"))
    assert workflow.versions.count() == 1
    assert actions(world.workspace_a) == [services.WORKFLOW_CREATED]


# ------------------------------------------------------------------ versions


def test_saves_number_versions_and_only_published_ones_become_active(
    workflow: Workflow, owner_access: Access
) -> None:
    v2 = services.version_save(
        access=owner_access, workflow=workflow, definition=edited("two"), note="Second"
    )
    v3 = services.version_save(
        access=owner_access, workflow=workflow, definition=edited("three"), publish=True
    )
    workflow.refresh_from_db()
    assert (v2.number, v2.note, v3.number) == (2, "Second", 3)
    assert workflow.active_version_id == v3.pk
    services.version_save(access=owner_access, workflow=workflow, definition=edited("four"))
    workflow.refresh_from_db()
    assert workflow.active_version_id == v3.pk  # a draft until published
    assert list(selectors.version_list(workflow).values_list("number", flat=True)) == [4, 3, 2, 1]


def test_an_unchanged_or_invalid_definition_saves_nothing(
    workflow: Workflow, owner_access: Access
) -> None:
    with pytest.raises(ValidationFailed, match="Nothing changed since version 1"):
        services.version_save(
            access=owner_access, workflow=workflow, definition=copy.deepcopy(DEFINITION)
        )
    invalid = edited("{{ steps.reply }}")
    with pytest.raises(ValidationFailed) as excinfo:
        services.version_save(access=owner_access, workflow=workflow, definition=invalid)
    assert excinfo.value.fields["definition"] == [
        "steps[1] (reply).config.value: reads its own output (steps.reply)"
    ]
    assert workflow.versions.count() == 1


def test_a_save_based_on_an_older_version_is_refused_before_the_edit_and_the_checks(
    workflow: Workflow, owner_access: Access
) -> None:
    services.version_save(access=owner_access, workflow=workflow, definition=edited("two"))
    invalid = edited("{{ steps.reply }}")
    with pytest.raises(Conflict, match="Someone saved version 2 since you opened version 1"):
        services.version_save(
            access=owner_access, workflow=workflow, definition=invalid, based_on=1
        )
    seen: list[dict[str, Any]] = []

    def edit(definition: dict[str, Any]) -> dict[str, Any]:
        seen.append(definition)
        changed = copy.deepcopy(definition)
        changed["steps"][0]["config"]["value"] = "{{ upper(input.ticket) }}"
        return changed

    with pytest.raises(Conflict, match="Someone saved version 2"):
        services.version_edit(access=owner_access, workflow=workflow, edit=edit, based_on=1)
    assert seen == []
    assert workflow.versions.count() == 2

    v3 = services.version_edit(access=owner_access, workflow=workflow, edit=edit, based_on=2)
    assert seen == [edited("two")]  # the edit is applied to the latest version
    assert v3.number == 3
    assert v3.definition["steps"][1]["config"]["value"] == "two"


def test_publish_and_rollback(workflow: Workflow, owner_access: Access, world: World) -> None:
    services.version_save(access=owner_access, workflow=workflow, definition=edited("two"))
    v2 = selectors.version_get(workflow, 2)
    services.version_publish(access=owner_access, version=v2)
    workflow.refresh_from_db()
    assert workflow.active_version_id == v2.pk
    services.version_publish(access=owner_access, version=v2)  # already active: nothing happens

    v1 = selectors.version_get(workflow, 1)
    rolled = services.version_rollback(access=owner_access, version=v1)
    workflow.refresh_from_db()
    assert (rolled.number, rolled.source) == (3, WorkflowVersion.Source.ROLLBACK)
    assert rolled.definition == v1.definition
    assert rolled.note == "Rolled back to version 1"
    assert workflow.active_version_id == rolled.pk
    assert actions(world.workspace_a) == [
        services.WORKFLOW_CREATED,
        services.VERSION_SAVED,
        services.VERSION_PUBLISHED,
        services.VERSION_ROLLED_BACK,
    ]
    published = AuditEvent.objects.get(action=services.VERSION_PUBLISHED)
    assert published.metadata == {"version": 2, "previous": 1}


def test_archived_workflows_keep_their_versions_but_take_no_new_ones(
    workflow: Workflow, owner_access: Access, world: World
) -> None:
    services.workflow_archive(access=owner_access, workflow=workflow)
    assert workflow.archived_at is not None
    assert list(selectors.workflow_list(access=owner_access)) == []
    still_readable = selectors.workflow_get(access=owner_access, workflow_id=workflow.pk)
    assert still_readable == workflow
    with pytest.raises(Conflict, match="archived"):
        services.version_save(access=owner_access, workflow=workflow, definition=edited("x"))
    with pytest.raises(Conflict):
        services.version_rollback(access=owner_access, version=workflow.versions.get())
    services.workflow_restore(access=owner_access, workflow=workflow)
    services.version_save(access=owner_access, workflow=workflow, definition=edited("x"))
    assert actions(world.workspace_a) == [
        services.WORKFLOW_CREATED,
        services.WORKFLOW_ARCHIVED,
        services.WORKFLOW_RESTORED,
        services.VERSION_SAVED,
    ]


def test_details_change_in_place_and_the_audit_says_what_changed(
    workflow: Workflow, owner_access: Access
) -> None:
    updated = services.workflow_update(
        access=owner_access,
        workflow=workflow,
        name=" Triage v2 ",
        description="Pages on-call",
        category="Support",
    )
    assert (updated.name, updated.description) == ("Triage v2", "Pages on-call")
    assert workflow.versions.count() == 1
    event = AuditEvent.objects.get(action=services.WORKFLOW_UPDATED)
    assert event.metadata == {
        "changes": {"name": ["Ticket triage", "Triage v2"], "description": ["", "Pages on-call"]}
    }
    with pytest.raises(ValidationFailed) as excinfo:
        services.workflow_update(
            access=owner_access, workflow=workflow, name="x" * 81, description="", category=""
        )
    assert set(excinfo.value.fields) == {"name"}


def test_workflows_of_another_workspace_are_not_found(workflow: Workflow, world: World) -> None:
    with schema_context(world.workspace_b.schema_name):
        outsider = access_of(world.outsider, world.workspace_b)
        with pytest.raises(NotFound):
            selectors.workflow_get(access=outsider, workflow_id=workflow.pk)
        assert list(selectors.workflow_list(access=outsider, include_archived=True)) == []
        with pytest.raises(NotFound):
            services.version_save(access=outsider, workflow=workflow, definition=edited("x"))


def test_version_get_names_the_missing_number(workflow: Workflow) -> None:
    assert selectors.version_get(workflow, 1).workflow is workflow
    with pytest.raises(NotFound, match="no version 9"):
        selectors.version_get(workflow, 9)


# ------------------------------------------------------------------ diff


def test_diff_lists_step_and_edge_changes_and_a_unified_text(
    workflow: Workflow, owner_access: Access
) -> None:
    changed = edited("paging on-call")
    changed["steps"][0]["name"] = "Classify"
    changed["steps"].append({"id": "log", "type": "transform", "config": {"value": "logged"}})
    changed["edges"].append({"from": "reply", "to": "log"})
    changed["inputs"]["priority"] = {"type": "integer"}
    new = services.version_save(access=owner_access, workflow=workflow, definition=changed)
    diff = selectors.version_diff(selectors.version_get(workflow, 1), new)

    assert (diff.from_version, diff.to_version) == (1, 2)
    assert diff.steps_added == ["log"]
    assert diff.steps_removed == []
    assert diff.steps_changed == [
        ("classify", [("name", None, "Classify")]),
        ("reply", [("config.value", "we are on it", "paging on-call")]),
    ]
    step_id, changes = diff.steps_changed[1]
    assert step_id == "reply"
    assert changes[0].field == "config.value"
    assert changes[0].new == "paging on-call"
    assert [(e.source, e.target, e.branch) for e in diff.edges_added] == [("reply", "log", "")]
    assert diff.edges_removed == []
    assert [c.field for c in diff.inputs_changed] == ["priority"]
    assert diff.unified.startswith("--- version 1\n+++ version 2\n")
    assert '-        "value": "we are on it"' in diff.unified
    assert '+        "value": "paging on-call"' in diff.unified

    same = selectors.version_diff(new, new)
    assert same.unified == ""
    assert not same.changed
    assert same.steps_changed == []


# ------------------------------------------------------------------ concurrency


@pytest.fixture
def committed_workflow(committed_world: World) -> tuple[World, Workflow]:
    with schema_context(committed_world.workspace_a.schema_name):
        workflow = services.workflow_create(
            access=access_of(committed_world.owner, committed_world.workspace_a),
            name="Race",
            definition=DEFINITION,
        )
    return committed_world, workflow


def test_concurrent_saves_get_distinct_numbers(
    committed_workflow: tuple[World, Workflow],
) -> None:
    world, workflow = committed_workflow
    access = access_of(world.owner, world.workspace_a)
    start = threading.Barrier(2)
    numbers: list[int] = []
    errors: list[BaseException] = []

    def save(value: str) -> None:
        try:
            with schema_context(world.workspace_a.schema_name):
                start.wait()
                version = services.version_save(
                    access=access, workflow=workflow, definition=edited(value)
                )
                numbers.append(version.number)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=save, args=(v,)) for v in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(numbers) == [2, 3]


# ------------------------------------------------------------------ templates


def test_a_template_becomes_a_workflow_with_a_free_name(
    in_alpha: None, owner_access: Access, viewer_access: Access
) -> None:
    from workflows import library

    template = library.templates()[0]
    first = prepare.workflow_from_template(access=owner_access, key=template.key)
    second = prepare.workflow_from_template(access=owner_access, key=template.key)
    assert (first.name, second.name) == (template.name, f"{template.name} (2)")
    assert first.template_key == template.key
    assert first.category == template.category
    version = first.versions.get()
    assert version.source == WorkflowVersion.Source.TEMPLATE
    assert version.definition == template.definition
    with pytest.raises(ValidationFailed) as excinfo:
        prepare.workflow_from_template(access=owner_access, key=template.key, name=template.name)
    assert "name" in excinfo.value.fields
    with pytest.raises(NotFound):
        prepare.workflow_from_template(access=owner_access, key="no-such-template")
    with pytest.raises(PermissionDenied):
        prepare.workflow_from_template(access=viewer_access, key=template.key)
