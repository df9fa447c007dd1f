"""What a run needs before it starts: a version that can run, and inputs that match what its
definition declares. The run services (workflows/runs.py) check both when a person, an API
client or a trigger starts a run; the sub-workflow node (workflows/nodes.py) checks both when
a run starts another.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from core.exceptions import ValidationFailed
from workflows import validators
from workflows.definition import json_type
from workflows.models import Workflow, WorkflowVersion


def version_require_runnable(*, workflow: Workflow, version: WorkflowVersion) -> None:
    """ValidationFailed(fields={"definition": [...]}) with the validators' messages when
    `version` cannot run. The active version was checked when it was published; any other may
    be a draft the builder saved incomplete (services.version_save, `allow_incomplete`)."""
    if version.pk == workflow.active_version_id:
        return
    try:
        validators.validate_or_raise(version.definition)
    except ValidationFailed as exc:
        message = exc.message[:1].lower() + exc.message[1:]
        raise ValidationFailed(
            f"Version {version.number} cannot run until it is fixed: {message}", fields=exc.fields
        ) from exc


def _coerce(kind: str, value: Any) -> tuple[bool, Any]:
    actual = json_type(value)
    if kind == actual:
        return True, value
    if kind == "number" and actual == "integer":
        return True, value
    if kind == "integer" and actual == "number" and float(value).is_integer():
        return True, int(value)
    return False, value


def inputs_check(definition: Mapping[str, Any], inputs: Any) -> dict[str, Any]:
    """A run's inputs checked against `definition["inputs"]`, with defaults applied. Undeclared
    names pass through (a webhook body may carry more than the workflow reads).

    ValidationFailed(fields={"inputs": ["<name>: <problem>", ...]}) names every bad input."""
    if inputs is None:
        inputs = {}
    if not isinstance(inputs, dict):
        raise ValidationFailed(
            "The run's inputs must be a JSON object.",
            fields={"inputs": ["Send an object of input name → value."]},
        )
    declared: Mapping[str, Any] = definition.get("inputs") or {}
    checked = dict(inputs)
    problems: list[str] = []
    for name, spec in declared.items():
        kind = spec.get("type", "string")
        if inputs.get(name) is None:
            if "default" in spec:
                checked[name] = copy.deepcopy(spec["default"])
            elif spec.get("required"):
                problems.append(f"{name}: required (a {kind})")
            continue
        ok, value = _coerce(kind, inputs[name])
        if not ok:
            problems.append(f"{name}: must be a {kind}, not a {json_type(inputs[name])}")
        checked[name] = value
    if problems:
        raise ValidationFailed(
            "The run's inputs are not valid: " + "; ".join(problems) + ".",
            fields={"inputs": problems},
        )
    return checked


def inputs_json_schema(definition: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema (2020-12) of the inputs `inputs_check` accepts for `definition`: one
    property per declared input with its type, description and default; required when declared
    required without a default (a default fills a missing one). Undeclared names are left out
    (`additionalProperties: false`): `inputs_check` lets them through, but nothing reads them.
    Every object this schema accepts passes `inputs_check` (an "integer" also accepts 3.0 in
    both; a "number", an integer)."""
    declared: Mapping[str, Any] = definition.get("inputs") or {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in declared.items():
        prop: dict[str, Any] = {"type": spec.get("type", "string")}
        if spec.get("description"):
            prop["description"] = spec["description"]
        if "default" in spec:
            prop["default"] = copy.deepcopy(spec["default"])
        elif spec.get("required"):
            required.append(name)
        properties[name] = prop
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema
