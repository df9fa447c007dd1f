"""(7)–(8) Expressions and `{{ … }}` templates: where they are in a definition, that they parse,
and that what they read (steps, inputs, a map's item and index) exists where they read it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from workflows import expressions
from workflows.expressions import ExpressionError
from workflows.validators.document import Document, Issue

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
    "code": ("inputs",),
}
EXPRESSION_FIELDS: dict[str, tuple[str, ...]] = {
    "condition": ("expression",),
    "router": ("expression",),
    "map": ("items",),
}


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


def _texts(doc: Document) -> Iterator[_Text]:
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
    doc = Document(document)
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
    doc = Document(document)
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
