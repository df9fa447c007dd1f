"""A workflow tool's input schema is the definition's declared inputs as JSON Schema 2020-12,
and it never accepts what starting a run refuses."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from core.exceptions import ValidationFailed
from workflows.runnable import inputs_check, inputs_json_schema

DEFINITION: dict[str, Any] = {
    "inputs": {
        "text": {"type": "string", "required": True},
        "count": {"type": "integer", "required": True},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean", "default": True},
        "items": {"type": "array", "description": "One per line."},
        "data": {"type": "object"},
    }
}

SAMPLES: list[Any] = [
    "words",
    "",
    0,
    3,
    -7,
    3.0,
    2.5,
    True,
    False,
    [],
    [1, "a"],
    {},
    {"a": 1},
]


def _run_start_accepts(arguments: dict[str, Any]) -> bool:
    try:
        inputs_check(DEFINITION, arguments)
    except ValidationFailed:
        return False
    return True


def test_the_schema_is_valid_json_schema_with_each_declared_input() -> None:
    schema = inputs_json_schema(DEFINITION)
    Draft202012Validator.check_schema(schema)
    assert schema["required"] == ["text", "count"]
    assert schema["properties"]["flag"] == {"type": "boolean", "default": True}
    assert schema["properties"]["items"] == {"type": "array", "description": "One per line."}
    assert inputs_json_schema({}) == {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }


@pytest.mark.parametrize("name", sorted(DEFINITION["inputs"]))
def test_every_value_the_schema_accepts_starting_a_run_accepts(name: str) -> None:
    validator = Draft202012Validator(inputs_json_schema(DEFINITION))
    for value in SAMPLES:
        arguments = {"text": "hi", "count": 1, name: value}
        if validator.is_valid(arguments):
            assert _run_start_accepts(arguments), (name, value)
    assert not validator.is_valid({"text": "hi"})  # a required input missing
    assert not _run_start_accepts({"text": "hi"})
