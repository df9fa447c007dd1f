"""Drafts saved incomplete (docs/workflows.md, "Drafts in the builder"): the builder may save
them, nothing publishes or runs them, and a sub-workflow step pinned to one fails saying why."""

from __future__ import annotations

from typing import Any

import pytest

from core.exceptions import ValidationFailed
from tenants.permissions import Access
from tests.helpers.workflows import drain, make_workflow
from workflows import runs, services
from workflows.models import Workflow, WorkflowRun, WorkflowVersion

pytestmark = pytest.mark.django_db

CHILD: dict[str, Any] = {
    "schema_version": 1,
    "inputs": {"n": {"type": "integer", "required": True}},
    "steps": [
        {"id": "double", "type": "transform", "config": {"value": "{{ input.n * 2 }}"}},
        {"id": "done", "type": "transform", "config": {"value": "{{ steps.double }}"}},
    ],
    "edges": [{"from": "double", "to": "done"}],
}
# The same with its edge removed: `done` is a second entry step and reads a step not upstream.
CHILD_HALF_EDITED: dict[str, Any] = {**CHILD, "edges": []}


def _child(owner_access: Access) -> Workflow:
    return services.workflow_create(access=owner_access, name="Doubler", definition=CHILD)


def test_only_an_incomplete_draft_may_be_saved_invalid(
    owner_access: Access, in_alpha: None
) -> None:
    workflow = _child(owner_access)
    with pytest.raises(ValidationFailed, match="has no incoming edge"):
        services.version_save(access=owner_access, workflow=workflow, definition=CHILD_HALF_EDITED)
    with pytest.raises(ValidationFailed, match="has no incoming edge"):
        services.version_save(
            access=owner_access,
            workflow=workflow,
            definition=CHILD_HALF_EDITED,
            publish=True,
            allow_incomplete=True,
        )
    assert workflow.versions.count() == 1

    draft = services.version_save(
        access=owner_access,
        workflow=workflow,
        definition=CHILD_HALF_EDITED,
        allow_incomplete=True,
    )
    assert draft.number == 2
    with pytest.raises(ValidationFailed) as refused:
        services.version_publish(access=owner_access, version=draft)
    assert refused.value.message.startswith("The workflow definition is not valid: steps[1] (done)")
    workflow.refresh_from_db()
    assert workflow.active_version is not None
    assert workflow.active_version.number == 1


def test_a_sub_workflow_step_pinned_to_an_incomplete_draft_fails_saying_why(
    owner_access: Access, in_alpha: None
) -> None:
    child = _child(owner_access)
    services.version_save(
        access=owner_access, workflow=child, definition=CHILD_HALF_EDITED, allow_incomplete=True
    )
    parent = make_workflow(
        {
            "schema_version": 1,
            "steps": [
                {
                    "id": "child",
                    "type": "sub_workflow",
                    "config": {"workflow": "Doubler", "version": 2, "inputs": {"n": 3}},
                }
            ],
            "edges": [],
        },
        name="Parent",
    )
    run = runs.run_start(workflow=parent, inputs={}, trigger=WorkflowRun.TriggerKind.MANUAL)
    drain()
    run.refresh_from_db()
    assert run.status == "failed"
    assert "Version 2 cannot run until it is fixed" in run.error
    assert "done" in run.error
    assert not WorkflowRun.objects.filter(workflow=child).exists()

    # Unpinned, the child's active version 1 runs as before.
    pinned_to_active = WorkflowVersion.objects.get(workflow=child, number=1)
    started = runs.run_start(
        workflow=child, inputs={"n": 3}, trigger="manual", version=pinned_to_active
    )
    drain()
    started.refresh_from_db()
    assert started.status == "succeeded", started.error


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        (
            {**CHILD, "steps": [*CHILD["steps"], {"id": "double", "type": "transform"}]},
            "steps[2] (double).id: 'double' is already the id of steps[0]",
        ),
        (
            {**CHILD, "steps": [*CHILD["steps"], {"id": "x", "type": "teleport"}]},
            "steps[2] (x).type: unknown step type 'teleport'",
        ),
        (
            {**CHILD, "edges": [{"from": "double", "to": "ghost"}]},
            "edges[0].to: there is no step 'ghost'",
        ),
        ({**CHILD, "steps": "double"}, "steps: must be a list of steps"),
        ({**CHILD, "edges": [{"from": "double"}]}, "edges[0]: must be an object with the step"),
    ],
)
def test_a_draft_may_be_incomplete_but_never_malformed(
    owner_access: Access, in_alpha: None, broken: dict[str, Any], named: str
) -> None:
    workflow = _child(owner_access)
    with pytest.raises(ValidationFailed) as refused:
        services.version_save(
            access=owner_access, workflow=workflow, definition=broken, allow_incomplete=True
        )
    assert refused.value.message.startswith("The workflow definition cannot be saved, even as")
    assert any(text.startswith(named) for text in refused.value.fields["definition"])
    assert workflow.versions.count() == 1


def test_a_draft_without_steps_yet_may_be_saved(owner_access: Access, in_alpha: None) -> None:
    workflow = _child(owner_access)
    empty = services.version_save(
        access=owner_access,
        workflow=workflow,
        definition={**CHILD, "steps": [], "edges": []},
        allow_incomplete=True,
    )
    assert empty.number == 2
    with pytest.raises(ValidationFailed):
        services.version_publish(access=owner_access, version=empty)
