"""(1) The schema check: the document's shape, each node's config, and the rules a JSON schema
cannot state, in the words an issue uses ("must be a list, not a string")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema

from workflows.definition import DEFINITION_SCHEMA, NODE_TYPES, STEP_ID_PATTERN, json_type
from workflows.sandbox import code_problem
from workflows.validators.document import Issue, known_type, step_label

MAP_BODY_TYPES = tuple(name for name, node in NODE_TYPES.items() if node.map_body)

_DEFINITION_VALIDATOR = jsonschema.Draft202012Validator(DEFINITION_SCHEMA)
_CONFIG_VALIDATORS = {
    name: jsonschema.Draft202012Validator(node.config_schema) for name, node in NODE_TYPES.items()
}

_JSON_TYPES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _kind(value: Any) -> str:
    """A value's type as a message says it: "a list", "a whole number", "true/false"."""
    name = json_type(value)
    return "true/false" if name == "boolean" else _JSON_TYPES.get(name, name)


def _format_path(parts: list[Any], steps: list[Any]) -> str:
    text = ""
    for n, part in enumerate(parts):
        if isinstance(part, int):
            top_step = n == 1 and parts[0] == "steps"
            text += step_label(steps, part)[len("steps") :] if top_step else f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "definition"


def _schema_issues(
    error: jsonschema.ValidationError, prefix: list[Any], steps: list[Any]
) -> list[Issue]:
    parts = [*prefix, *error.absolute_path]
    named = _field_issues(error, parts, steps)
    if named is not None:
        return named
    return [Issue(_format_path(parts, steps), _value_problem(error, parts) or error.message)]


def _field_issues(
    error: jsonschema.ValidationError, parts: list[Any], steps: list[Any]
) -> list[Issue] | None:
    """Problems that name a field below the failing object (missing, unknown, badly named);
    None for the other validators."""
    validator, value, instance = error.validator, error.validator_value, error.instance

    def at(key: str) -> str:
        return _format_path([*parts, key], steps)

    if validator == "required":
        missing = [k for k in value if isinstance(instance, dict) and k not in instance]
        name = next((k for k in missing if repr(k) in error.message), missing[0] if missing else "")
        return [Issue(at(name), "is required")]
    if validator == "additionalProperties":
        known = sorted((error.schema.get("properties") or {}).keys())
        expected = f" (expected: {', '.join(known)})" if known else ""
        extra = [k for k in instance if k not in known] if isinstance(instance, dict) else []
        return [Issue(at(str(k)), f"is not a field here{expected}") for k in extra]
    if validator == "propertyNames":
        return [
            Issue(
                at(str(instance)),
                "is not a valid input name: start with a letter or _, use letters, digits, _",
            )
        ]
    return None


# Validators whose message needs only the schema's value.
_BOUND_PROBLEMS: dict[str, Callable[[Any], str]] = {
    "const": lambda value: f"must be {value!r}",
    "minimum": lambda value: f"must be at least {value}",
    "maximum": lambda value: f"must be at most {value}",
    "maxLength": lambda value: f"must be at most {value} characters",
    "maxItems": lambda value: f"takes at most {value} items",
}


def _value_problem(error: jsonschema.ValidationError, parts: list[Any]) -> str | None:
    """What is wrong with the failing value itself, in words; None: jsonschema's message."""
    validator, value, instance = error.validator, error.validator_value, error.instance
    if validator in _BOUND_PROBLEMS:
        return _BOUND_PROBLEMS[str(validator)](value)
    if validator == "type":
        wanted = value if isinstance(value, list) else [value]
        names = " or ".join(_JSON_TYPES.get(str(t), str(t)) for t in wanted)
        return f"must be {names}, not {_kind(instance)}"
    if validator == "enum":
        if parts[-1:] == ["type"] and len(parts) == 3 and parts[0] == "steps":
            return f"unknown step type {instance!r} (one of {', '.join(value)})"
        return f"must be one of: {', '.join(map(str, value))} (not {instance!r})"
    if validator == "pattern":
        if value == STEP_ID_PATTERN and parts[-1:] == ["id"]:
            return (
                f"{instance!r} is not a valid step id: start with a letter, use letters, "
                "digits, _ and - (at most 64)"
            )
        if value == STEP_ID_PATTERN:
            return f"{instance!r} must start with a letter and use letters, digits, _, -"
        return f"{instance!r} does not have the expected form"
    if validator == "minLength":
        return "must not be empty" if value == 1 else f"needs {value}+ characters"
    if validator == "minItems":
        return "needs at least one step" if parts == ["steps"] else f"needs at least {value} items"
    return None


def _run_schema(
    validator: jsonschema.Draft202012Validator,
    instance: Any,
    prefix: list[Any],
    steps: list[Any],
) -> list[Issue]:
    errors = sorted(
        validator.iter_errors(instance),
        key=lambda e: [(0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in e.path],
    )
    issues: list[Issue] = []
    for error in errors:
        issues.extend(_schema_issues(error, prefix, steps))
    return issues


def _input_default_issues(inputs: Any) -> list[Issue]:
    issues: list[Issue] = []
    if not isinstance(inputs, dict):
        return issues
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
    }
    for name, spec in inputs.items():
        if not isinstance(spec, dict) or "default" not in spec or spec["default"] is None:
            continue
        check = checks.get(str(spec.get("type")))
        if check is not None and not check(spec["default"]):
            wanted = _JSON_TYPES.get(spec["type"], spec["type"])
            issues.append(
                Issue(f"inputs.{name}.default", f"must be {wanted}, like the input's type")
            )
    return issues


def _config_rules(
    steps: list[Any], i: int, node_type: str, config: dict[str, Any], where: str
) -> list[Issue]:
    """What a JSON schema cannot say about one node's config."""
    issues: list[Issue] = []
    at = f"{step_label(steps, i)}.{where}"
    if node_type == "router":
        mode = config.get("mode")
        if mode == "expression" and not config.get("expression"):
            issues.append(Issue(f"{at}.expression", "is required when mode is expression"))
        if mode == "llm" and not config.get("prompt"):
            issues.append(Issue(f"{at}.prompt", "is required when mode is llm"))
        routes = config.get("routes")
        if isinstance(routes, list):
            names = [r.get("name") for r in routes if isinstance(r, dict)]
            for name in sorted({n for n in names if isinstance(n, str) and names.count(n) > 1}):
                issues.append(Issue(f"{at}.routes", f"the route {name!r} is listed twice"))
    if node_type == "join" and config.get("mode") == "n" and not config.get("n"):
        issues.append(Issue(f"{at}.n", "is required when mode is n"))
    if node_type == "code" and isinstance(config.get("code"), str) and config["code"]:
        problem = code_problem(config["code"])
        if problem:
            issues.append(Issue(f"{at}.code", problem))
    if node_type == "llm" and isinstance(config.get("output_schema"), dict):
        try:
            jsonschema.Draft202012Validator.check_schema(config["output_schema"])
        except jsonschema.SchemaError as exc:
            inner = ".".join(str(p) for p in exc.path)
            issues.append(
                Issue(
                    f"{at}.output_schema" + (f".{inner}" if inner else ""),
                    f"is not a valid JSON schema: {exc.message}",
                )
            )
    return issues


def check_schema(document: Any) -> list[Issue]:
    """(1) The document's shape: DEFINITION_SCHEMA, each node's config schema (a map's body
    against its own type's), and the rules a schema cannot state."""
    if not isinstance(document, dict):
        return [
            Issue(
                "definition",
                f"must be a JSON object with schema_version and steps, not {_kind(document)}",
            )
        ]
    raw_steps = document.get("steps")
    steps: list[Any] = raw_steps if isinstance(raw_steps, list) else []
    issues = _run_schema(_DEFINITION_VALIDATOR, document, [], steps)
    issues += _input_default_issues(document.get("inputs"))
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or not known_type(step.get("type")):
            continue
        config = step.get("config")
        if not isinstance(config, dict):
            continue  # reported by the document schema
        node_type = step["type"]
        issues += _run_schema(_CONFIG_VALIDATORS[node_type], config, ["steps", i, "config"], steps)
        issues += _config_rules(steps, i, node_type, config, "config")
        body = config.get("node") if node_type == "map" else None
        if isinstance(body, dict) and isinstance(body.get("type"), str):
            body_type = body["type"]
            if body_type not in MAP_BODY_TYPES:
                issues.append(
                    Issue(
                        f"{step_label(steps, i)}.config.node.type",
                        f"{body_type!r} cannot be a map body (use one of "
                        f"{', '.join(MAP_BODY_TYPES)})",
                    )
                )
            elif isinstance(body.get("config"), dict):
                prefix = ["steps", i, "config", "node", "config"]
                issues += _run_schema(_CONFIG_VALIDATORS[body_type], body["config"], prefix, steps)
                issues += _config_rules(steps, i, body_type, body["config"], "config.node.config")
    return issues
