"""Shared by every check: the `Issue` they report, the document as the checks after the schema
see it, and `graph_checkable`, which says when those checks can run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from workflows.definition import NODE_TYPES


@dataclass(frozen=True)
class Issue:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class Document:
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
        return step_label(self.steps, i)

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


def step_label(steps: list[Any], i: int) -> str:
    step = steps[i] if 0 <= i < len(steps) else None
    step_id = step.get("id") if isinstance(step, dict) else None
    if isinstance(step_id, str) and step_id and ")" not in step_id and len(step_id) <= 64:
        return f"steps[{i}] ({step_id})"
    return f"steps[{i}]"


def known_type(value: Any) -> bool:
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
        if not isinstance(step.get("id"), str) or not known_type(step.get("type")):
            return False
    edges = document.get("edges", [])
    if not isinstance(edges, list):
        return False
    return all(
        isinstance(e, dict) and isinstance(e.get("from"), str) and isinstance(e.get("to"), str)
        for e in edges
    )


def shape_issues(document: Any) -> list[Issue]:
    """What makes `document` something no version may hold, a draft included: not an object,
    steps that are not objects with a string id and a known type, edges that are not objects
    naming two step ids. [] when its shape is sound (it may still have no steps yet)."""
    if not isinstance(document, dict):
        return [Issue("definition", "must be a JSON object with schema_version and steps")]
    steps = document.get("steps")
    if not isinstance(steps, list):
        return [Issue("steps", "must be a list of steps")]
    issues: list[Issue] = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            issues.append(Issue(f"steps[{i}]", "must be an object with an id and a type"))
            continue
        if not isinstance(step.get("id"), str) or not step["id"]:
            issues.append(Issue(f"steps[{i}].id", "is required (the step's id, a string)"))
        if not known_type(step.get("type")):
            issues.append(
                Issue(
                    f"{step_label(steps, i)}.type",
                    f"unknown step type {step.get('type')!r} (one of {', '.join(NODE_TYPES)})",
                )
            )
    edges = document.get("edges", [])
    if not isinstance(edges, list):
        return [*issues, Issue("edges", "must be a list of edges")]
    for n, edge in enumerate(edges):
        ends = isinstance(edge, dict) and all(isinstance(edge.get(k), str) for k in ("from", "to"))
        if not ends:
            issues.append(Issue(f"edges[{n}]", "must be an object with the step ids from and to"))
    return issues
