"""The builder's edits as pure functions on a definition document: each takes the latest
version's definition and returns a new document (the input is never changed), which the view
then saves as a new version through `services.version_save` (which validates it).

They refuse only what the validators cannot see once the edit is done (a rename onto an
existing id would silently merge two steps' edges; an edge that is already there); everything
else — unreachable steps, bad branches, cycles — is left to the validators, so the messages are
the same as in the JSON view and the API.
"""

from __future__ import annotations

import copy
from typing import Any

from core.exceptions import ValidationFailed
from workflows.builder.layout import step_branches

Document = dict[str, Any]


def _copy(definition: Document) -> Document:
    document = copy.deepcopy(definition)
    document.setdefault("steps", [])
    document.setdefault("edges", [])
    return document


def _index(document: Document, step_id: str) -> int:
    for index, step in enumerate(document["steps"]):
        if step.get("id") == step_id:
            return index
    raise ValidationFailed(f"There is no step “{step_id}” in the latest version.")


def _has_edge(document: Document, source: str, target: str, branch: str) -> bool:
    return any(
        e.get("from") == source and e.get("to") == target and (e.get("branch") or "") == branch
        for e in document["edges"]
    )


def _edge(source: str, target: str, branch: str) -> dict[str, str]:
    edge = {"from": source, "to": target}
    if branch:
        edge["branch"] = branch
    return edge


def step_ids(definition: Document) -> list[str]:
    return [str(s.get("id")) for s in definition.get("steps") or [] if isinstance(s, dict)]


def step_get(definition: Document, step_id: str) -> dict[str, Any] | None:
    for step in definition.get("steps") or []:
        if isinstance(step, dict) and step.get("id") == step_id:
            return step
    return None


def step_replace(definition: Document, step_id: str, step: dict[str, Any]) -> Document:
    """Put `step` where `step_id` was; a new id is carried over to that step's edges."""
    document = _copy(definition)
    index = _index(document, step_id)
    new_id = step["id"]
    if new_id != step_id:
        if new_id in step_ids(document):
            raise ValidationFailed(
                f"Another step already has the id “{new_id}”.",
                fields={"id": [f"Another step already has the id “{new_id}”."]},
            )
        for edge in document["edges"]:
            if edge.get("from") == step_id:
                edge["from"] = new_id
            if edge.get("to") == step_id:
                edge["to"] = new_id
    previous = document["steps"][index]
    if "position" in previous:  # kept: the builder has no use for it, other editors may
        step = {**step, "position": previous["position"]}
    document["steps"][index] = step
    return document


def step_add(
    definition: Document,
    step: dict[str, Any],
    *,
    after: str = "",
    branch: str = "",
    insert: bool = False,
) -> Document:
    """Append `step`; with `after`, also the edge after → step (on `branch`). With `insert`,
    the edges that left `after` on that branch now leave the new step instead."""
    document = _copy(definition)
    if step["id"] in step_ids(document):
        message = f"Another step already has the id “{step['id']}”."
        raise ValidationFailed(message, fields={"id": [message]})
    if after:
        _index(document, after)
        if insert:
            for edge in document["edges"]:
                if edge.get("from") == after and (edge.get("branch") or "") == branch:
                    edge["from"] = step["id"]
                    edge.pop("branch", None)
        document["edges"].append(_edge(after, step["id"], branch))
    document["steps"].append(step)
    return document


def step_delete(definition: Document, step_id: str, *, reconnect: bool = True) -> Document:
    """Remove the step and its edges; with `reconnect`, each predecessor is linked to each
    successor (keeping the predecessor's branch), so a chain stays a chain."""
    document = _copy(definition)
    index = _index(document, step_id)
    incoming = [e for e in document["edges"] if e.get("to") == step_id]
    outgoing = [e for e in document["edges"] if e.get("from") == step_id]
    document["edges"] = [
        e for e in document["edges"] if step_id not in (e.get("from"), e.get("to"))
    ]
    if reconnect:
        for before in incoming:
            for after in outgoing:
                source, target = str(before["from"]), str(after["to"])
                branch = str(before.get("branch") or "")
                if not _has_edge(document, source, target, branch):
                    document["edges"].append(_edge(source, target, branch))
    del document["steps"][index]
    return document


def edge_add(definition: Document, source: str, target: str, branch: str = "") -> Document:
    document = _copy(definition)
    _index(document, source)
    _index(document, target)
    if _has_edge(document, source, target, branch):
        raise ValidationFailed(f"{source} → {target} is already connected.")
    document["edges"].append(_edge(source, target, branch))
    return document


def edge_delete(definition: Document, source: str, target: str, branch: str = "") -> Document:
    document = _copy(definition)
    kept = [
        e
        for e in document["edges"]
        if not (
            e.get("from") == source and e.get("to") == target and (e.get("branch") or "") == branch
        )
    ]
    if len(kept) == len(document["edges"]):
        raise ValidationFailed(f"There is no edge {source} → {target} in the latest version.")
    document["edges"] = kept
    return document


def inputs_replace(definition: Document, inputs: dict[str, dict[str, Any]]) -> Document:
    document = _copy(definition)
    if inputs:
        document["inputs"] = inputs
    else:
        document.pop("inputs", None)
    return document


def branch_choices(definition: Document) -> list[tuple[str, str]]:
    """(value, label) for "from" pickers: every step, and every step+branch it can take."""
    choices: list[tuple[str, str]] = []
    for step in definition.get("steps") or []:
        if not isinstance(step, dict):
            continue
        step_id = str(step.get("id"))
        names = step_branches(step)
        if names:
            choices.extend((f"{step_id}|{name}", f"{step_id} → {name}") for name in names)
        else:
            choices.append((step_id, step_id))
    return choices


def split_branch(value: str) -> tuple[str, str]:
    source, _, branch = value.partition("|")
    return source, branch
