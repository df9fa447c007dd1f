"""The canvas's edits: a batch of operations (add, move, connect, disconnect, delete, paste,
layout, restore) applied to the latest version and saved as ONE new version through
`services.version_edit`, so the edit-conflict rule (`based_on`) and the draft rules are the
service's, exactly as for the side panel's forms.

    result = canvas_apply(access=access, workflow=workflow, base=4, ops=[
        {"op": "add", "type": "condition", "position": {"x": 40, "y": 200}},
        {"op": "connect", "from": "classify", "to": "$0", "branch": ""},
    ])

Operations are pure functions of the document (the step and edge ones are those of
workflows/builder/edits.py). `$N` in a later operation of the same batch names the step the
N-th `add` created (its id is chosen by the server). Positions are layout only: they never
change what runs, so a batch of moves saves a draft that runs exactly like the version before.

`presence_note` keeps who has a workflow's canvas open, for the others' canvases when they poll
(without their websocket; with it, presence is the consumer's, workflows/builder/consumers.py).
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache
from django.urls import reverse

from core.exceptions import ValidationFailed
from tenants.permissions import Access, Perm
from tenants.schemas import current_schema
from workflows import selectors, services
from workflows.builder import edits, queries
from workflows.builder.forms import DEFAULT_CONFIG
from workflows.builder.layout import (
    MAP_BODY_PORT,
    layout,
    map_body_type,
    port_branch,
    position_of,
    step_branches,
    step_ports,
)
from workflows.definition import NODE_TYPES, STEP_ID_PATTERN
from workflows.models import RUN_FINISHED, Workflow, WorkflowVersion

Document = dict[str, Any]
MAX_OPS = 200
MAX_COORDINATE = 100_000.0
PASTE_OFFSET = (32.0, 88.0)  # right and down: a pasted box clears the one it copies
PRESENCE_SECONDS = 15  # a canvas that has not polled for this long has left


@dataclass
class _Batch:
    document: Document
    added: list[str] = field(default_factory=list)  # ids of the steps `add` and `paste` made


@dataclass(frozen=True)
class CanvasResult:
    version: WorkflowVersion
    added: list[str]  # the ids the server chose for added and pasted steps, in order


def free_step_id(definition: Document, prefix: str) -> str:
    """`<prefix>_1`, `<prefix>_2`, … : the first id no step of `definition` has."""
    taken = set(edits.step_ids(definition))
    number = 1
    while f"{prefix}_{number}" in taken:
        number += 1
    return f"{prefix}_{number}"


def _text(op: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = op.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise ValidationFailed(f"ops: “{op.get('op')}” needs “{key}” as text.")
    return value


def _position(value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    point = position_of({"position": value})
    if point is None:
        raise ValidationFailed('ops: a position is {"x": number, "y": number}.')
    x, y = (min(round(c, 1), MAX_COORDINATE) for c in point)
    return {"x": x, "y": y}


def _pin(document: Document) -> None:
    """Give every step without a position the one the automatic layout draws it at, so that
    placing one step does not move the others."""
    steps = [s for s in document["steps"] if isinstance(s, dict)]
    if all(position_of(s) is not None for s in steps):
        return
    boxes = {n.id: n for n in layout(document).nodes}
    for step in steps:
        box = boxes.get(str(step.get("id")))
        if position_of(step) is None and box is not None:
            step["position"] = {"x": round(box.x, 1), "y": round(box.y, 1)}


def _step(document: Document, step_id: str) -> dict[str, Any]:
    step = edits.step_get(document, step_id)
    if step is None:
        raise ValidationFailed(f"There is no step “{step_id}” in the latest version.")
    return step


def _resolve(batch: _Batch, value: str) -> str:
    """`$N` is the N-th step this batch added."""
    if value.startswith("$") and value[1:].isdigit():
        index = int(value[1:])
        if index >= len(batch.added):
            raise ValidationFailed(f"ops: {value} names a step this batch has not added.")
        return batch.added[index]
    return value


def _add(batch: _Batch, op: dict[str, Any]) -> None:
    node_type = _text(op, "type")
    if node_type not in NODE_TYPES:
        raise ValidationFailed(f"ops: there is no step type “{node_type}”.")
    position = _position(op.get("position"))
    document = batch.document
    if position is not None:
        _pin(document)
    step: dict[str, Any] = {
        "id": free_step_id(document, node_type),
        "type": node_type,
        "config": copy.deepcopy(DEFAULT_CONFIG.get(node_type, {})),
    }
    if position is not None:
        step["position"] = position
    batch.document = edits.step_add(document, step)
    batch.added.append(step["id"])


def _move(batch: _Batch, op: dict[str, Any]) -> None:
    step_id = _resolve(batch, _text(op, "step"))
    position = _position(op.get("position"))
    _step(batch.document, step_id)
    if position is not None:
        _pin(batch.document)
    step = _step(batch.document, step_id)
    if position is None:
        step.pop("position", None)
    else:
        step["position"] = position


def _branch_for(step: dict[str, Any], op: dict[str, Any]) -> str:
    """The branch a `connect` saves: from the `port` it was drawn from (the canvas), or the
    `branch` it names. Either must be one the source can take: a condition, router or
    approval step connects only from its branches, every other step without one."""
    step_id, node_type = step["id"], step.get("type")
    if "port" in op:
        port = _text(op, "port", required=False)
        branch = port_branch(step, port)
        if branch is None:
            ports = step_ports(step, 1) or ("its output",)
            raise ValidationFailed(
                f"ops: {node_type} step “{step_id}” has no port “{port}” "
                f"(its ports: {', '.join(ports)})."
            )
        return branch
    branch = _text(op, "branch", required=False)
    branches = step_branches(step)
    if branches and branch not in branches:
        raise ValidationFailed(
            f"ops: connect from one of the branches of {node_type} step “{step_id}” "
            f"({', '.join(branches)}), not “{branch}”."
        )
    if not branches and node_type == "router":
        raise ValidationFailed(
            f"ops: router step “{step_id}” has no routes yet; name them in its panel first."
        )
    if not branches and branch:
        raise ValidationFailed(
            f"ops: {node_type} step “{step_id}” has no branches; connect it without one."
        )
    return branch


def _attach_body(batch: _Batch, map_id: str, target: str) -> None:
    """The map's body port dropped on `target`: that step becomes what the map runs per item
    (its type and config move into the map's `node`; a body it had is replaced: undo brings it
    back). Only a step without connections of its own, of a type a map can run, can be one."""
    document = batch.document
    step = _step(document, target)
    if not NODE_TYPES.get(str(step.get("type"))) or not NODE_TYPES[step["type"]].map_body:
        kinds = ", ".join(n for n, t in NODE_TYPES.items() if t.map_body)
        raise ValidationFailed(
            f"ops: a {step.get('type')} step cannot be a map's body (use one of: {kinds})."
        )
    if any(target in (e.get("from"), e.get("to")) for e in document["edges"]):
        raise ValidationFailed(
            f"ops: “{target}” is connected to other steps; a map's body is a step on its own "
            "(remove its connections first)."
        )
    body = {"type": step["type"], "config": copy.deepcopy(step.get("config") or {})}
    document = edits.step_delete(document, target, reconnect=False)
    _step(document, map_id).setdefault("config", {})["node"] = body
    batch.document = document


def _detach_body(batch: _Batch, map_id: str) -> None:
    """The map's body taken out as a step of its own, beside the map (the map then has no
    body: a draft problem until it gets one)."""
    _pin(batch.document)
    step = _step(batch.document, map_id)
    kind = map_body_type(step)
    if not kind:
        raise ValidationFailed(f"ops: map step “{map_id}” has no body to take out.")
    body = step["config"].pop("node")
    x, y = position_of(step) or (0.0, 0.0)
    new_id = free_step_id(batch.document, kind)
    new_step = {
        "id": new_id,
        "type": kind,
        "config": copy.deepcopy(body.get("config") or {}),
        "position": _position({"x": x + 216, "y": y}),
    }
    batch.document = edits.step_add(batch.document, new_step)
    batch.added.append(new_id)


def _connect(batch: _Batch, op: dict[str, Any], *, remove: bool = False) -> None:
    source = _resolve(batch, _text(op, "from"))
    step = _step(batch.document, source)
    body_port = step.get("type") == "map" and op.get("port") == MAP_BODY_PORT
    if body_port and remove:
        _detach_body(batch, source)
        return
    target = _resolve(batch, _text(op, "to"))
    if body_port:
        _attach_body(batch, source, target)
    elif remove:
        if "port" in op:
            branch = port_branch(step, _text(op, "port", required=False)) or ""
        else:
            branch = _text(op, "branch", required=False)
        batch.document = edits.edge_delete(batch.document, source, target, branch)
    else:
        batch.document = edits.edge_add(batch.document, source, target, _branch_for(step, op))


def _delete(batch: _Batch, op: dict[str, Any]) -> None:
    step_id = _resolve(batch, _text(op, "step"))
    batch.document = edits.step_delete(batch.document, step_id, reconnect=False)


def _paste(batch: _Batch, op: dict[str, Any]) -> None:
    """Copies of `steps` (as copied from a definition) under new ids where theirs are taken,
    with the `edges` between them, offset from where they were."""
    steps, pasted_edges = op.get("steps"), op.get("edges") or []
    if not isinstance(steps, list) or not steps or not isinstance(pasted_edges, list):
        raise ValidationFailed("ops: “paste” needs “steps” (a list of steps) and “edges”.")
    _pin(batch.document)
    renamed: dict[str, str] = {}
    for raw in steps:
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise ValidationFailed("ops: each pasted step needs an “id”.")
        if raw.get("type") not in NODE_TYPES:
            raise ValidationFailed(f"ops: there is no step type “{raw.get('type')}”.")
        step = copy.deepcopy(raw)
        old_id = step["id"]
        base = re.sub(r"(_copy)?(_\d+)?$", "", old_id) or str(step["type"])
        new_id = old_id
        if new_id in edits.step_ids(batch.document) or not re.match(STEP_ID_PATTERN, new_id):
            new_id = free_step_id(batch.document, f"{base}_copy"[:58])
        step["id"] = renamed[old_id] = new_id
        x, y = position_of(step) or (0.0, 0.0)
        step["position"] = _position({"x": x + PASTE_OFFSET[0], "y": y + PASTE_OFFSET[1]})
        batch.document = edits.step_add(batch.document, step)
        batch.added.append(new_id)
    for edge in pasted_edges:
        if not isinstance(edge, dict):
            continue
        source, target = renamed.get(str(edge.get("from"))), renamed.get(str(edge.get("to")))
        if source and target:
            branch = str(edge.get("branch") or "")
            batch.document = edits.edge_add(batch.document, source, target, branch)


def _layout(batch: _Batch) -> None:
    """Back to the automatic layout: the positions are dropped."""
    for step in batch.document["steps"]:
        if isinstance(step, dict):
            step.pop("position", None)


def apply_ops(
    definition: Document, ops: list[Any], *, versions: dict[int, Document] | None = None
) -> _Batch:
    """The batch applied to a copy of `definition`. `versions` holds the definitions a
    `restore` names (an undo or redo: that version's steps and edges, saved again)."""
    if not isinstance(ops, list) or not ops:
        raise ValidationFailed("ops: send a list of one or more operations.")
    if len(ops) > MAX_OPS:
        raise ValidationFailed(f"ops: at most {MAX_OPS} operations in one batch.")
    document = copy.deepcopy(definition)
    document.setdefault("steps", [])
    document.setdefault("edges", [])
    batch = _Batch(document=document)
    for op in ops:
        if not isinstance(op, dict):
            raise ValidationFailed("ops: each operation is an object with an “op”.")
        kind = op.get("op")
        if kind == "add":
            _add(batch, op)
        elif kind == "move":
            _move(batch, op)
        elif kind in ("connect", "disconnect"):
            _connect(batch, op, remove=kind == "disconnect")
        elif kind == "delete":
            _delete(batch, op)
        elif kind == "paste":
            _paste(batch, op)
        elif kind == "layout":
            _layout(batch)
        elif kind == "restore":
            number = op.get("version")
            if not isinstance(number, int) or number not in (versions or {}):
                raise ValidationFailed("ops: “restore” names a version of this workflow.")
            batch.document = copy.deepcopy((versions or {})[number])
        else:
            raise ValidationFailed(
                f"ops: unknown operation “{kind}” (add, move, connect, disconnect, delete, "
                "paste, layout, restore)."
            )
    return batch


def describe(ops: list[Any]) -> str:
    """The version's note: what the batch did, by operation (`Canvas: 2 moves, 1 connect`)."""
    counts: dict[str, int] = {}
    for op in ops if isinstance(ops, list) else []:
        kind = str(op.get("op")) if isinstance(op, dict) else "?"
        counts[kind] = counts.get(kind, 0) + 1
    if list(counts) == ["restore"]:
        return "Canvas: undo or redo (restored version {})".format(
            ", ".join(str(o.get("version")) for o in ops if isinstance(o, dict))
        )
    return "Canvas: " + ", ".join(f"{n} {kind}" for kind, n in counts.items())


def canvas_apply(
    *, access: Access, workflow: Workflow, base: int | None, ops: list[Any]
) -> CanvasResult:
    """Save the batch as one new version made on version `base` (refused with Conflict when
    it is not the latest). The draft may be incomplete; its problems are the version's."""
    restores = [o for o in ops if isinstance(o, dict) and o.get("op") == "restore"]
    numbers = {o["version"] for o in restores if isinstance(o.get("version"), int)}
    known = selectors.version_list(workflow).filter(number__in=numbers)
    versions = {v.number: v.definition for v in known}
    applied: list[_Batch] = []

    def edit(latest: Document) -> Document:
        applied.append(apply_ops(latest, ops, versions=versions))
        return applied[-1].document

    version = services.version_edit(
        access=access,
        workflow=workflow,
        edit=edit,
        based_on=base,
        note=describe(ops),
        allow_incomplete=True,
    )
    return CanvasResult(version=version, added=applied[-1].added)


def version_state(version: WorkflowVersion) -> dict[str, Any]:
    """A saved version as the canvas redraws it."""
    return {
        "version": version.number,
        "definition": version.definition,
        "problems": selectors.version_problems(version),
    }


def canvas_state(access: Access, workflow: Workflow, known: int | None) -> dict[str, Any]:
    """What the canvas polls: the latest version (with `known`, the version the canvas already
    has, its definition and problems only when a newer one exists: polling stays cheap), the
    last run's step states and whether this member may edit."""
    run, steps = queries.last_run_states(workflow)
    latest = selectors.version_latest(workflow)
    return {
        **({"version": latest.number} if known == latest.number else version_state(latest)),
        "run": None
        if run is None
        else {
            "id": run.pk,
            "url": reverse(
                "workflow_run_detail",
                kwargs={"workspace_slug": access.workspace.slug, "run_id": run.pk},
            ),
            "status": run.status,
            "version": run.version.number,
            "live": run.status not in RUN_FINISHED,
        },
        "steps": steps,
        "can_edit": access.can(Perm.BUILD) and workflow.archived_at is None,
    }


def presence_note(*, access: Access, workflow: Workflow, selected: str) -> list[dict[str, str]]:
    """Note that `access`'s member has the canvas open on `selected` (a step id or "") and
    return the others who have it open: `[{"name", "selected"}]`, each seen in the last
    PRESENCE_SECONDS. Kept in the cache (Redis), per workspace and workflow; a lost update
    between two polls only delays a name by one poll."""
    if access.user is None:
        return []
    key = f"wf-canvas-presence:{current_schema()}:{workflow.pk}"
    now = time.time()
    present: dict[str, dict[str, Any]] = cache.get(key) or {}
    present = {k: v for k, v in present.items() if now - v["seen"] < PRESENCE_SECONDS}
    me = str(access.user.pk)
    present[me] = {"name": access.user.email, "selected": selected[:64], "seen": now}
    cache.set(key, present, PRESENCE_SECONDS * 2)
    return [
        {"name": str(v["name"]), "selected": str(v["selected"])}
        for k, v in sorted(present.items())
        if k != me
    ]
