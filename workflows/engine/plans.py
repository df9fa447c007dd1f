"""A version's plan: its definition parsed once per process, with what the engine asks of it on
every step (the topological order, each node's incoming edges, the step outputs each node's
config reads)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tenants.schemas import current_schema
from workflows import nodes
from workflows.definition import Definition, Edge
from workflows.expressions import ExpressionError, references, template_references
from workflows.models import WorkflowVersion


@dataclass(frozen=True)
class Plan:
    version_id: int
    number: int
    workflow_id: int
    definition: Definition
    order: tuple[str, ...]  # topological, ties in definition order
    incoming: dict[str, tuple[Edge, ...]]
    reads: dict[str, frozenset[str]]  # node id → the step ids its config reads ("*": any)
    output_reads: frozenset[str]
    has_rejected_edge: frozenset[str]  # approval nodes with a "rejected" edge

    def spec(self, node_id: str, *, item: bool) -> nodes.NodeSpec:
        step = self.definition.step(node_id)
        if item:
            body = step.config.get("node") or {}
            return nodes.NodeSpec(node_id, body.get("type", ""), body.get("config") or {})
        return nodes.NodeSpec(node_id, step.type, step.config)


def config_reads(config: Mapping[str, Any]) -> set[str]:
    """The step ids a node config reads (its expressions and templates; "*": any)."""
    found: set[str] = set()
    for key, value in config.items():
        if key in ("expression", "items") and isinstance(value, str):
            found |= references(value)
        elif key == "node" and isinstance(value, dict):
            found |= config_reads(value.get("config") or {})
        elif key != "output_schema":
            found |= template_references(value)
    return found


def _topological(definition: Definition) -> tuple[str, ...]:
    position = {s.id: i for i, s in enumerate(definition.steps)}
    indegree = {s.id: 0 for s in definition.steps}
    for edge in definition.edges:
        indegree[edge.target] += 1
    ready = sorted((i for i, d in indegree.items() if d == 0), key=position.__getitem__)
    order: list[str] = []
    while ready:
        current = ready.pop(0)
        order.append(current)
        for edge in definition.successors(current):
            indegree[edge.target] -= 1
            if indegree[edge.target] == 0:
                ready.append(edge.target)
                ready.sort(key=position.__getitem__)
    order += [s.id for s in definition.steps if s.id not in order]  # validators forbid cycles
    return tuple(order)


def build_plan(version_id: int, number: int, workflow_id: int, document: Any) -> Plan:
    definition = Definition.parse(document)
    reads: dict[str, frozenset[str]] = {}
    for step in definition.steps:
        try:
            reads[step.id] = frozenset(config_reads(step.config))
        except ExpressionError:
            reads[step.id] = frozenset({"*"})
    try:
        output_reads = frozenset(template_references(definition.output or {}))
    except ExpressionError:
        output_reads = frozenset({"*"})
    return Plan(
        version_id=version_id,
        number=number,
        workflow_id=workflow_id,
        definition=definition,
        order=_topological(definition),
        incoming={s.id: tuple(definition.predecessors(s.id)) for s in definition.steps},
        reads=reads,
        output_reads=output_reads,
        has_rejected_edge=frozenset(e.source for e in definition.edges if e.branch == "rejected"),
    )


_plans: dict[tuple[str, int, Any], Plan] = {}


def plan_for(version: WorkflowVersion) -> Plan:
    """The parsed plan of a version. Versions are immutable, so it is cached per process, keyed
    by schema, id and creation time (ids start again in a workspace re-created under the same
    schema name). `version` may have its definition deferred: it is read only on a miss."""
    deferred = "definition" in version.get_deferred_fields()
    return _plan(
        version.pk,
        version.created_at,
        version.number,
        version.workflow_id,
        document=None if deferred else version.definition,
    )


def _plan(
    version_id: int, created_at: Any, number: int, workflow_id: int, *, document: Any = None
) -> Plan:
    key = (current_schema(), version_id, created_at)
    plan = _plans.get(key)
    if plan is None:
        if document is None:
            document = (
                WorkflowVersion.objects.filter(pk=version_id)
                .values_list("definition", flat=True)
                .get()
            )
        plan = build_plan(version_id, number, workflow_id, document)
        if len(_plans) > 500:
            _plans.clear()
        _plans[key] = plan
    return plan
