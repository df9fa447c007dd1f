"""Reads for workflows and their versions, in the current workspace schema (a workflow of
another workspace is simply not there: NotFound). Callers check `Perm.WORKSPACE_VIEW`.

`version_diff` compares two versions the way the versions page and the API show it: steps
added, removed and changed field by field, edges added and removed, and a unified diff of the
two definitions as pretty JSON.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.db.models import QuerySet

from core.exceptions import NotFound
from tenants.permissions import Access, Perm
from workflows import validators
from workflows.definition import Edge
from workflows.io import pretty_json
from workflows.models import Workflow, WorkflowVersion

# --- workflows and versions ----------------------------------------------------------------


def workflow_list(*, access: Access, include_archived: bool = False) -> QuerySet[Workflow]:
    """Workflows by name, with the number of their active version at hand (its definition is
    deferred: lists do not need it)."""
    access.require(Perm.WORKSPACE_VIEW)
    workflows = Workflow.objects.select_related("active_version").defer(
        "active_version__definition"
    )
    return workflows if include_archived else workflows.filter(archived_at__isnull=True)


def active_workflow_count() -> int:
    """Workflows that count against the plan (billing.usage meter `workflows`): archived ones
    do not."""
    return Workflow.objects.filter(archived_at__isnull=True).count()


def workflow_get(*, access: Access, workflow_id: int) -> Workflow:
    """A workflow of this workspace, archived or not."""
    access.require(Perm.WORKSPACE_VIEW)
    workflow = Workflow.objects.select_related("active_version").filter(pk=workflow_id).first()
    if workflow is None:
        raise NotFound("No workflow with that id in this workspace.")
    return workflow


def version_list(workflow: Workflow) -> QuerySet[WorkflowVersion]:
    """Newest first."""
    return workflow.versions.order_by("-number")


def version_get(workflow: Workflow, number: int) -> WorkflowVersion:
    version = workflow.versions.filter(number=number).first()
    if version is None:
        raise NotFound(f"“{workflow.name}” has no version {number}.")
    version.workflow = workflow
    return version


def version_problems(version: WorkflowVersion) -> list[str]:
    """What stops `version` from being published or run, as the validators word it (`[]` when
    nothing does). Only a draft saved from the builder can have any when it is saved; any
    version can gain some later (an agent it names was deleted). Reads the workspace schema."""
    return [str(issue) for issue in validators.validate(version.definition)]


def version_or_latest(workflow: Workflow, number: int | None) -> WorkflowVersion:
    """Version `number` of the workflow, or its latest when no number is given."""
    return version_get(workflow, number) if number else version_latest(workflow)


def version_latest(workflow: Workflow) -> WorkflowVersion:
    version = version_list(workflow).first()
    if version is None:
        raise NotFound(f"“{workflow.name}” has no version.")
    version.workflow = workflow
    return version


# --- diff ----------------------------------------------------------------------------------


class FieldChange(NamedTuple):
    field: str  # dotted path inside the step: "config.prompt", "retry.max_attempts"
    old: Any  # None when the field was added
    new: Any  # None when the field was removed


class StepChange(NamedTuple):
    step: str
    changes: list[FieldChange]


@dataclass(frozen=True)
class VersionDiff:
    from_version: int
    to_version: int
    steps_added: list[str]
    steps_removed: list[str]
    steps_changed: list[StepChange]  # unpacks as (step_id, [FieldChange(field, old, new)])
    edges_added: list[Edge]
    edges_removed: list[Edge]
    inputs_changed: list[FieldChange] = field(default_factory=list)  # field: the input name
    output_changed: bool = False
    unified: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.unified)

    @property
    def text(self) -> str:
        """The unified diff (the API's name for it)."""
        return self.unified


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Objects flattened to dotted paths; lists and scalars are leaves."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _field_changes(old: Any, new: Any) -> list[FieldChange]:
    before, after = _flatten(old), _flatten(new)
    keys = list(before) + [k for k in after if k not in before]
    return [
        FieldChange(k, before.get(k), after.get(k))
        for k in keys
        if k not in before or k not in after or before[k] != after[k]
    ]


def _steps(definition: Any) -> dict[str, dict[str, Any]]:
    steps = definition.get("steps") if isinstance(definition, dict) else None
    return {
        s["id"]: s
        for s in (steps if isinstance(steps, list) else [])
        if isinstance(s, dict) and isinstance(s.get("id"), str)
    }


def _edges(definition: Any) -> list[Edge]:
    edges = definition.get("edges") if isinstance(definition, dict) else None
    found: list[Edge] = []
    for e in edges if isinstance(edges, list) else []:
        if isinstance(e, dict):
            edge = Edge(str(e.get("from", "")), str(e.get("to", "")), str(e.get("branch") or ""))
            if edge not in found:
                found.append(edge)
    return found


def version_diff(old: WorkflowVersion, new: WorkflowVersion) -> VersionDiff:
    """What changed from `old` to `new` (any two versions of a workflow, in either order)."""
    before, after = old.definition, new.definition
    old_steps, new_steps = _steps(before), _steps(after)
    old_edges, new_edges = _edges(before), _edges(after)
    changed = [
        StepChange(step_id, changes)
        for step_id, step in new_steps.items()
        if step_id in old_steps and (changes := _field_changes(old_steps[step_id], step))
    ]
    old_inputs = before.get("inputs") if isinstance(before, dict) else None
    new_inputs = after.get("inputs") if isinstance(after, dict) else None
    old_inputs = old_inputs if isinstance(old_inputs, dict) else {}
    new_inputs = new_inputs if isinstance(new_inputs, dict) else {}
    inputs_changed = [
        FieldChange(name, old_inputs.get(name), new_inputs.get(name))
        for name in [*old_inputs, *(n for n in new_inputs if n not in old_inputs)]
        if old_inputs.get(name) != new_inputs.get(name)
    ]
    unified = "\n".join(
        difflib.unified_diff(
            pretty_json(before).splitlines(),
            pretty_json(after).splitlines(),
            fromfile=f"version {old.number}",
            tofile=f"version {new.number}",
            lineterm="",
        )
    )
    return VersionDiff(
        from_version=old.number,
        to_version=new.number,
        steps_added=[s for s in new_steps if s not in old_steps],
        steps_removed=[s for s in old_steps if s not in new_steps],
        steps_changed=changed,
        edges_added=[e for e in new_edges if e not in old_edges],
        edges_removed=[e for e in old_edges if e not in new_edges],
        inputs_changed=inputs_changed,
        output_changed=(before.get("output") if isinstance(before, dict) else None)
        != (after.get("output") if isinstance(after, dict) else None),
        unified=unified,
    )
