"""Every check a workflow definition must pass before it is saved, imported, generated or sent
through the API (docs/workflows.md, "Validation").

    issues = validate(document)        # [] when valid; never raises, whatever `document` is
    validate_or_raise(document)        # ValidationFailed(fields={"definition": [...]})

Each check is a function of its own (`check_<what>(document) -> list[Issue]`). `validate` runs
the schema check first; when the document's shape is too broken for the others to mean
anything (not an object, steps without ids or types, edges that are not objects) it stops
there, otherwise it runs every check and reports every problem at once. The checks after the
schema accept any document that passed the schema's shape test and ignore what it already
reported (a wrong type, an unknown endpoint), so one mistake is reported once.

An issue's path names the step and the field: `steps[2] (classify).config.prompt`. Checks that
look things up (agents, tools, sub-workflows, model aliases) read the current workspace schema.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jsonschema

from agents.models import Agent, ModelAlias, ProviderKind
from agents.tools.registry import BUILTIN_TOOLS
from core.exceptions import ValidationFailed
from workflows import expressions
from workflows.agent_refs import active_by_name, agent_id_of
from workflows.definition import DEFINITION_SCHEMA, NODE_TYPES, STEP_ID_PATTERN, json_type
from workflows.expressions import ExpressionError
from workflows.limits import plan_limits
from workflows.models import Workflow, WorkflowVersion

# Config fields holding `{{ … }}` templates (strings, or objects/lists of them), and fields
# holding bare expressions, per node type (the engine reads the same ones).
TEMPLATE_FIELDS: dict[str, tuple[str, ...]] = {
    "agent": ("prompt",),
    "llm": ("system", "prompt"),
    "tool": ("arguments",),
    "router": ("prompt",),
    "transform": ("value",),
    "approval": ("message",),
    "sub_workflow": ("inputs",),
}
EXPRESSION_FIELDS: dict[str, tuple[str, ...]] = {
    "condition": ("expression",),
    "router": ("expression",),
    "map": ("items",),
}
MAP_BODY_TYPES = tuple(name for name, node in NODE_TYPES.items() if node.map_body)
BRANCHING_TYPES = ("condition", "router", "approval")

_DEFINITION_VALIDATOR = jsonschema.Draft202012Validator(DEFINITION_SCHEMA)
_CONFIG_VALIDATORS = {
    name: jsonschema.Draft202012Validator(node.config_schema) for name, node in NODE_TYPES.items()
}
_ID = re.compile(STEP_ID_PATTERN)


@dataclass(frozen=True)
class Issue:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# --- the document, as the checks after the schema see it ----------------------------------


class _Document:
    """A definition that passed `graph_checkable`: steps are objects with string ids and known
    types, edges objects with string endpoints. Everything else may still be wrong."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.raw = document
        self.steps: list[dict[str, Any]] = list(document.get("steps") or [])
        raw_edges = document.get("edges")
        self.edges: list[dict[str, Any]] = list(raw_edges) if isinstance(raw_edges, list) else []
        inputs = document.get("inputs")
        self.inputs_ok = inputs is None or (
            isinstance(inputs, dict) and all(isinstance(v, dict) for v in inputs.values())
        )
        self.inputs: dict[str, Any] = inputs if isinstance(inputs, dict) else {}

    @cached_property
    def index(self) -> dict[str, int]:
        """Step id → position of its first occurrence (duplicates are check_unique_ids')."""
        found: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            found.setdefault(step["id"], i)
        return found

    def label(self, i: int) -> str:
        return _step_label(self.steps, i)

    def config(self, i: int) -> dict[str, Any]:
        config = self.steps[i].get("config")
        return config if isinstance(config, dict) else {}

    @cached_property
    def valid_edges(self) -> list[tuple[int, dict[str, Any]]]:
        """Edges whose endpoints both exist, with their position in `edges`."""
        return [
            (n, e)
            for n, e in enumerate(self.edges)
            if e["from"] in self.index and e["to"] in self.index
        ]

    @cached_property
    def predecessors(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {step_id: set() for step_id in self.index}
        for _, edge in self.valid_edges:
            found[edge["to"]].add(edge["from"])
        return found

    @cached_property
    def successors(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {step_id: [] for step_id in self.index}
        for _, edge in self.valid_edges:
            found[edge["from"]].append(edge["to"])
        return found

    def upstream(self, step_id: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.predecessors.get(step_id, ()))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.predecessors[current])
        return seen

    @cached_property
    def entries(self) -> list[str]:
        return [step_id for step_id in self.index if not self.predecessors[step_id]]

    def bodies(self) -> Iterator[tuple[int, str, str, dict[str, Any], bool]]:
        """(step index, node type, path inside the step, config, in a map body) of every step
        and every map body."""
        for i, step in enumerate(self.steps):
            config = self.config(i)
            yield i, step["type"], "config", config, False
            body = config.get("node") if step["type"] == "map" else None
            if isinstance(body, dict) and isinstance(body.get("type"), str):
                body_config = body.get("config")
                yield (
                    i,
                    body["type"],
                    "config.node.config",
                    body_config if isinstance(body_config, dict) else {},
                    True,
                )


def _step_label(steps: list[Any], i: int) -> str:
    step = steps[i] if 0 <= i < len(steps) else None
    step_id = step.get("id") if isinstance(step, dict) else None
    if isinstance(step_id, str) and step_id and ")" not in step_id and len(step_id) <= 64:
        return f"steps[{i}] ({step_id})"
    return f"steps[{i}]"


def _known_type(value: Any) -> bool:
    return isinstance(value, str) and value in NODE_TYPES


def graph_checkable(document: Any) -> bool:
    """Whether the graph checks can run: the schema issues, if any, are then independent.
    Callers running a subset of `CHECKS` gate them on this, as `validate` does."""
    if not isinstance(document, dict):
        return False
    steps = document.get("steps")
    if not isinstance(steps, list) or not steps:
        return False
    for step in steps:
        if not isinstance(step, dict):
            return False
        if not isinstance(step.get("id"), str) or not _known_type(step.get("type")):
            return False
    edges = document.get("edges", [])
    if not isinstance(edges, list):
        return False
    return all(
        isinstance(e, dict) and isinstance(e.get("from"), str) and isinstance(e.get("to"), str)
        for e in edges
    )


# --- (1) the schema ------------------------------------------------------------------------

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
            text += _step_label(steps, part)[len("steps") :] if top_step else f"[{part}]"
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
    at = f"{_step_label(steps, i)}.{where}"
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
        if not isinstance(step, dict) or not _known_type(step.get("type")):
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
                        f"{_step_label(steps, i)}.config.node.type",
                        f"{body_type!r} cannot be a map body (use one of "
                        f"{', '.join(MAP_BODY_TYPES)})",
                    )
                )
            elif isinstance(body.get("config"), dict):
                prefix = ["steps", i, "config", "node", "config"]
                issues += _run_schema(_CONFIG_VALIDATORS[body_type], body["config"], prefix, steps)
                issues += _config_rules(steps, i, body_type, body["config"], "config.node.config")
    return issues


# --- (2) unique step ids -------------------------------------------------------------------


def check_unique_ids(document: dict[str, Any]) -> list[Issue]:
    doc = _Document(document)
    issues = []
    for i, step in enumerate(doc.steps):
        first = doc.index[step["id"]]
        if first != i:
            issues.append(
                Issue(f"{doc.label(i)}.id", f"{step['id']!r} is already the id of steps[{first}]")
            )
    return issues


# --- (3) edges -----------------------------------------------------------------------------


def _branches_of(doc: _Document, step_id: str) -> list[str]:
    step = doc.steps[doc.index[step_id]]
    if step["type"] == "router":
        routes = doc.config(doc.index[step_id]).get("routes")
        names = [
            r["name"]
            for r in (routes if isinstance(routes, list) else [])
            if isinstance(r, dict) and isinstance(r.get("name"), str)
        ]
        return list(dict.fromkeys(names))
    return list(NODE_TYPES[step["type"]].branches)


def check_edges(document: dict[str, Any]) -> list[Issue]:
    """(3) Both ends of every edge are steps; a branch is one its source can take, and only
    condition, router and approval steps have (and need) branches; no edge is listed twice."""
    doc = _Document(document)
    issues: list[Issue] = []
    seen: dict[tuple[str, str, str], int] = {}
    for n, edge in enumerate(doc.edges):
        source, target, branch = edge["from"], edge["to"], edge.get("branch")
        for end, step_id in (("from", source), ("to", target)):
            if step_id not in doc.index:
                issues.append(Issue(f"edges[{n}].{end}", f"there is no step {step_id!r}"))
        if source not in doc.index:
            continue
        source_type = doc.steps[doc.index[source]]["type"]
        allowed = _branches_of(doc, source)
        if source_type not in BRANCHING_TYPES:
            if branch:
                issues.append(
                    Issue(
                        f"edges[{n}].branch",
                        f"{source!r} is a {source_type} step; only edges leaving a condition, "
                        "router or approval step have a branch",
                    )
                )
        elif not branch:
            issues.append(
                Issue(
                    f"edges[{n}]",
                    f"leaves {source_type} step {source!r}, so it needs a branch "
                    f"({' or '.join(allowed) or 'a route name'})",
                )
            )
        elif isinstance(branch, str) and branch not in allowed:
            issues.append(
                Issue(
                    f"edges[{n}].branch",
                    f"{branch!r} is not a branch of {source_type} step {source!r} "
                    f"(its branches: {', '.join(allowed) or 'none yet'})",
                )
            )
        key = (source, target, branch if isinstance(branch, str) else "")
        if key in seen:
            issues.append(Issue(f"edges[{n}]", f"repeats edges[{seen[key]}]"))
        else:
            seen[key] = n
    return issues


# --- (4) no cycles -------------------------------------------------------------------------


def check_acyclic(document: dict[str, Any]) -> list[Issue]:
    """(4) The steps form a DAG; work is repeated only through a map step's body."""
    doc = _Document(document)
    issues: list[Issue] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    reported: set[frozenset[str]] = set()

    for root in doc.index:
        if state.get(root):
            continue
        path: list[str] = [root]
        iterators = [iter(doc.successors[root])]
        state[root] = 1
        while iterators:
            nxt = next(iterators[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iterators.pop()
                continue
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    first = min(cycle, key=doc.index.__getitem__)
                    start = cycle.index(first)
                    ordered = cycle[start:] + cycle[:start] + [first]
                    issues.append(
                        Issue(
                            doc.label(doc.index[first]),
                            f"is in a cycle ({' → '.join(ordered)}); workflows cannot loop "
                            "back, repeat work with a map step instead",
                        )
                    )
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iterators.append(iter(doc.successors[nxt]))
    return issues


# --- (5) one entry -------------------------------------------------------------------------


def check_single_entry(document: dict[str, Any]) -> list[Issue]:
    """(5) Exactly one step has no incoming edge: the one a run starts with."""
    doc = _Document(document)
    entries = doc.entries
    if len(entries) == 1:
        return []
    if not entries:
        return [Issue("edges", "every step has an incoming edge, so no step can start the run")]
    names = ", ".join(entries)
    return [
        Issue(
            doc.label(doc.index[entries[1]]),
            f"has no incoming edge, like {entries[0]!r}: a workflow starts at exactly one "
            f"step (entry steps now: {names}); connect it after another step",
        )
    ]


# --- (6) every step reachable --------------------------------------------------------------


def check_reachable(document: dict[str, Any]) -> list[Issue]:
    """(6) Every step can be reached from the entry step (only meaningful with one entry)."""
    doc = _Document(document)
    if len(doc.entries) != 1:
        return []
    entry = doc.entries[0]
    seen = {entry}
    stack = [entry]
    while stack:
        for nxt in doc.successors[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return [
        Issue(doc.label(i), f"cannot be reached from the entry step {entry!r}")
        for step_id, i in doc.index.items()
        if step_id not in seen
    ]


# --- expressions and templates, where they are ----------------------------------------------


@dataclass(frozen=True)
class _Text:
    path: str  # the issue path of the field
    text: str
    is_template: bool
    step: int | None  # None: the workflow's output
    in_body: bool


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _strings(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for n, inner in enumerate(value):
            yield from _strings(inner, f"{path}[{n}]")


def _texts(doc: _Document) -> Iterator[_Text]:
    for i, node_type, where, config, in_body in doc.bodies():
        base = f"{doc.label(i)}.{where}"
        for name in EXPRESSION_FIELDS.get(node_type, ()):
            value = config.get(name)
            if isinstance(value, str) and not (node_type == "router" and value == ""):
                yield _Text(f"{base}.{name}", value, False, i, in_body)
        for name in TEMPLATE_FIELDS.get(node_type, ()):
            for path, text in _strings(config.get(name), f"{base}.{name}"):
                yield _Text(path, text, True, i, in_body)
    output = doc.raw.get("output")
    if isinstance(output, dict):
        for path, text in _strings(output, "output"):
            yield _Text(path, text, True, None, False)


def _expressions_of(text: _Text) -> list[str]:
    if not text.is_template:
        return [text.text]
    return expressions.template_expressions(text.text)


# --- (8) expressions parse -----------------------------------------------------------------


def check_expressions(document: dict[str, Any]) -> list[Issue]:
    """(8) Every expression and every `{{ … }}` of every template parses and uses only what
    docs/workflows.md allows."""
    doc = _Document(document)
    issues: list[Issue] = []
    for text in _texts(doc):
        try:
            if text.is_template:
                if text.text.count("{{") != text.text.count("}}"):
                    issues.append(Issue(text.path, "has a '{{' without its '}}' (or the reverse)"))
                    continue
                expressions.check_template(text.text)
            else:
                expressions.check(text.text)
        except ExpressionError as exc:
            issues.append(Issue(text.path, str(exc)))
    return issues


# --- (7) references resolve ----------------------------------------------------------------


@dataclass
class _Reads:
    steps: set[str]
    inputs: set[str]
    scoped: set[str]  # item / index


def _reads(expression: str) -> _Reads:
    tree = ast.parse(expression.strip(), mode="eval")
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    reads = _Reads(set(), set(), set())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Name):
            continue
        if node.id in ("item", "index"):
            reads.scoped.add(node.id)
            continue
        if node.id not in ("steps", "input"):
            continue
        parent = parents.get(id(node))
        key: str | None = None
        if isinstance(parent, ast.Attribute):
            key = parent.attr
        elif (
            isinstance(parent, ast.Subscript)
            and isinstance(parent.slice, ast.Constant)
            and isinstance(parent.slice.value, str)
        ):
            key = parent.slice.value
        if key is not None:
            (reads.steps if node.id == "steps" else reads.inputs).add(key)
    return reads


def check_references(document: dict[str, Any]) -> list[Issue]:
    """(7) `steps.X` names a step that runs before the reader (the output may read any step),
    `input.Y` a declared input, and `item`/`index` appear only inside a map step's body."""
    doc = _Document(document)
    issues: list[Issue] = []
    upstream: dict[int, set[str]] = {}
    declared = sorted(doc.inputs)
    for text in _texts(doc):
        for expression in _expressions_of(text):
            try:
                expressions.check(expression)
            except ExpressionError:
                continue  # check_expressions reports it
            reads = _reads(expression)
            for step_id in sorted(reads.steps):
                if step_id not in doc.index:
                    issues.append(
                        Issue(text.path, f"reads steps.{step_id}, but there is no such step")
                    )
                    continue
                if text.step is None:
                    continue
                own_id = doc.steps[text.step]["id"]
                if step_id == own_id:
                    issues.append(Issue(text.path, f"reads its own output (steps.{step_id})"))
                    continue
                if text.step not in upstream:
                    upstream[text.step] = doc.upstream(own_id)
                if step_id not in upstream[text.step]:
                    issues.append(
                        Issue(
                            text.path,
                            f"reads steps.{step_id}, but {step_id!r} does not run before "
                            f"{own_id!r} (connect it upstream or read another step)",
                        )
                    )
            if doc.inputs_ok:
                for name in sorted(reads.inputs - set(doc.inputs)):
                    known = f"declared: {', '.join(declared)}" if declared else "none declared"
                    issues.append(
                        Issue(
                            text.path,
                            f"reads input.{name}, which is not one of the workflow's inputs "
                            f"({known})",
                        )
                    )
            for name in sorted(reads.scoped):
                if not text.in_body:
                    issues.append(
                        Issue(text.path, f"uses {name!r}, which exists only inside a map body")
                    )
    return issues


# --- (9) tools, agents, models; (10) sub-workflows -------------------------------------------


def _named(doc: _Document, node_type: str, field: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(issue path, value, config) of every string `field` of steps (and map bodies) of
    `node_type`."""
    found = []
    for i, body_type, where, config, _in_body in doc.bodies():
        value = config.get(field)
        if body_type == node_type and isinstance(value, str) and value:
            found.append((f"{doc.label(i)}.{where}.{field}", value, config))
    return found


def check_tools(document: dict[str, Any]) -> list[Issue]:
    """(9a) Tool steps name a built-in tool and give the arguments it requires."""

    doc = _Document(document)
    issues: list[Issue] = []
    for path, name, config in _named(doc, "tool", "tool"):
        tool = BUILTIN_TOOLS.get(name)
        if tool is None:
            issues.append(
                Issue(
                    path, f"there is no tool {name!r} (tools: {', '.join(sorted(BUILTIN_TOOLS))})"
                )
            )
            continue
        arguments = config.get("arguments")
        given = arguments if isinstance(arguments, dict) else {}
        base = path.rsplit(".", 1)[0]
        for required in tool.parameters.get("required", []):
            if required not in given:
                issues.append(
                    Issue(f"{base}.arguments.{required}", f"is required by the {name} tool")
                )
    return issues


def check_agents(document: dict[str, Any]) -> list[Issue]:
    """(9b) Agent steps hold an agent of this workspace that is not archived: by
    `config.agent_id`, or (a definition not yet saved: an import, a template, the API) by the
    name in `config.agent`, which saving binds to the id (workflows/agent_refs.py)."""
    from django.db.models.functions import Lower

    doc = _Document(document)
    uses = [
        (f"{doc.label(i)}.{where}", config)
        for i, node_type, where, config, _ in doc.bodies()
        if node_type == "agent"
    ]
    if not uses:
        return []
    ids = {pk for _, c in uses if (pk := agent_id_of(c)) is not None}
    by_id = {a.pk: a for a in Agent.objects.filter(pk__in=ids)} if ids else {}
    names = [
        c["agent"] for _, c in uses if agent_id_of(c) is None and isinstance(c.get("agent"), str)
    ]
    active = active_by_name(names)
    lowered = {n.strip().lower() for n in names}
    archived = (
        set(
            Agent.objects.filter(archived_at__isnull=False)
            .annotate(lowered=Lower("name"))
            .filter(lowered__in=lowered)
            .values_list("lowered", flat=True)
        )
        if names
        else set()
    )
    issues = []
    for base, config in uses:
        pk = agent_id_of(config)
        name = config.get("agent")
        if pk is not None:
            agent = by_id.get(pk)
            if agent is None:
                was = f" (it was “{name}”)" if isinstance(name, str) and name else ""
                issues.append(
                    Issue(
                        f"{base}.agent_id",
                        f"there is no agent with id {pk} in this workspace{was}; choose the "
                        "agent again",
                    )
                )
            elif agent.archived_at is not None:
                issues.append(
                    Issue(
                        f"{base}.agent_id",
                        f"the agent {agent.name!r} is archived; choose another agent",
                    )
                )
        elif isinstance(name, str) and name:
            if name.strip().lower() in active:
                continue
            if name.strip().lower() in archived:
                issues.append(
                    Issue(f"{base}.agent", f"the agent {name!r} is archived; choose another agent")
                )
            else:
                issues.append(
                    Issue(f"{base}.agent", f"there is no agent named {name!r} in this workspace")
                )
        elif "agent_id" not in config and "agent" not in config:
            issues.append(Issue(f"{base}.agent_id", "is required: choose the agent this step asks"))
    return issues


def check_models(document: dict[str, Any]) -> list[Issue]:
    """(9c) A model written as `provider:model` names a provider we support (unless it is an
    alias of this workspace). Plain names are aliases, resolved when the step runs."""

    doc = _Document(document)
    uses = [u for t in ("llm", "router") for u in _named(doc, t, "model") if ":" in u[1]]
    if not uses:
        return []
    aliases = set(
        ModelAlias.objects.filter(name__in={n for _, n, _ in uses}).values_list("name", flat=True)
    )
    issues = []
    for path, name, _ in uses:
        provider, _, model = name.partition(":")
        if name in aliases or (provider in ProviderKind.values and model):
            continue
        issues.append(
            Issue(
                path,
                f"{name!r} is neither a model alias of this workspace nor provider:model "
                f"(providers: {', '.join(ProviderKind.values)})",
            )
        )
    return issues


def check_sub_workflows(document: dict[str, Any]) -> list[Issue]:
    """(10) Sub-workflow steps name a workflow of this workspace that is not archived, and the
    pinned version exists (or, unpinned, the workflow has a published version)."""

    doc = _Document(document)
    uses = _named(doc, "sub_workflow", "workflow")
    if not uses:
        return []
    names = {name for _, name, _ in uses}
    workflows: dict[str, Workflow] = {}
    for workflow in Workflow.objects.filter(name__in=names, archived_at__isnull=True).order_by(
        "pk"
    ):
        workflows.setdefault(workflow.name, workflow)
    numbers: set[tuple[int, int]] = set(
        WorkflowVersion.objects.filter(workflow__in=workflows.values()).values_list(
            "workflow_id", "number"
        )
    )
    issues = []
    for path, name, config in uses:
        target = workflows.get(name)
        if target is None:
            issues.append(Issue(path, f"there is no active workflow named {name!r} here"))
            continue
        number = config.get("version")
        base = path.rsplit(".", 1)[0]
        if isinstance(number, int) and not isinstance(number, bool):
            if (target.pk, number) not in numbers:
                issues.append(Issue(f"{base}.version", f"{name!r} has no version {number}"))
        elif target.active_version_id is None:
            issues.append(Issue(path, f"{name!r} has no published version; pin a version"))
    return issues


# --- (11) plan limits ----------------------------------------------------------------------


def check_limits(document: dict[str, Any]) -> list[Issue]:
    """(11) Steps, fan-out, map concurrency and literal map lists within the plan."""
    doc = _Document(document)
    limits = plan_limits()
    issues = []
    if len(doc.steps) > limits.max_steps:
        issues.append(
            Issue(
                "steps",
                f"has {len(doc.steps)} steps; this workspace's plan allows {limits.max_steps}",
            )
        )
    for step_id, i in doc.index.items():
        width = len(doc.successors[step_id])
        if width > limits.max_fan_out:
            issues.append(
                Issue(
                    doc.label(i),
                    f"has {width} outgoing edges; this workspace's plan allows "
                    f"{limits.max_fan_out}",
                )
            )
        if doc.steps[i]["type"] != "map":
            continue
        config = doc.config(i)
        concurrency = config.get("concurrency")
        if isinstance(concurrency, int) and concurrency > limits.max_map_concurrency:
            issues.append(
                Issue(
                    f"{doc.label(i)}.config.concurrency",
                    f"is {concurrency}; this workspace's plan allows {limits.max_map_concurrency}",
                )
            )
        items = config.get("items")
        if isinstance(items, str):
            try:
                literal = ast.literal_eval(items.strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                literal = None
            if isinstance(literal, list | tuple) and len(literal) > limits.max_map_items:
                issues.append(
                    Issue(
                        f"{doc.label(i)}.config.items",
                        f"lists {len(literal)} items; this workspace's plan allows "
                        f"{limits.max_map_items}",
                    )
                )
    return issues


# --- all of them ---------------------------------------------------------------------------

CHECKS: tuple[Callable[[dict[str, Any]], list[Issue]], ...] = (
    check_unique_ids,
    check_edges,
    check_acyclic,
    check_single_entry,
    check_reachable,
    check_expressions,
    check_references,
    check_tools,
    check_agents,
    check_models,
    check_sub_workflows,
    check_limits,
)


def validate(document: Any) -> list[Issue]:
    """Every problem of `document`, in the order the checks find them; [] when it is valid.
    Never raises on bad input. Runs in the current workspace schema."""
    issues = check_schema(document)
    if not graph_checkable(document):
        return issues or [Issue("definition", "is not a workflow definition")]
    for check in CHECKS:
        issues += check(document)
    return list(dict.fromkeys(issues))  # one mistake can surface in two checks


def validate_or_raise(document: Any) -> None:
    issues = validate(document)
    if not issues:
        return
    more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
    raise ValidationFailed(
        f"The workflow definition is not valid: {issues[0]}{more}.",
        fields={"definition": [str(issue) for issue in issues]},
    )
