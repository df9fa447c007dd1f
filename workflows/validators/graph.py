"""(2)–(6) The graph checks: unique step ids, edges, no cycles, one entry, every step
reachable."""

from __future__ import annotations

from typing import Any

from workflows.definition import NODE_TYPES
from workflows.validators.document import Document, Issue

BRANCHING_TYPES = ("condition", "router", "approval")


# --- (2) unique step ids -------------------------------------------------------------------


def check_unique_ids(document: dict[str, Any]) -> list[Issue]:
    doc = Document(document)
    issues = []
    for i, step in enumerate(doc.steps):
        first = doc.index[step["id"]]
        if first != i:
            issues.append(
                Issue(f"{doc.label(i)}.id", f"{step['id']!r} is already the id of steps[{first}]")
            )
    return issues


# --- (3) edges -----------------------------------------------------------------------------


def _branches_of(doc: Document, step_id: str) -> list[str]:
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


def _missing_ends(doc: Document, n: int, edge: dict[str, Any]) -> list[Issue]:
    return [
        Issue(f"edges[{n}].{end}", f"there is no step {edge[end]!r}")
        for end in ("from", "to")
        if edge[end] not in doc.index
    ]


def check_edge_ends(document: dict[str, Any]) -> list[Issue]:
    """Both ends of every edge are steps (the part of (3) even a draft must pass)."""
    doc = Document(document)
    return [issue for n, edge in enumerate(doc.edges) for issue in _missing_ends(doc, n, edge)]


def check_edges(document: dict[str, Any]) -> list[Issue]:
    """(3) Both ends of every edge are steps; a branch is one its source can take, and only
    condition, router and approval steps have (and need) branches; no edge is listed twice."""
    doc = Document(document)
    issues: list[Issue] = []
    seen: dict[tuple[str, str, str], int] = {}
    for n, edge in enumerate(doc.edges):
        source, target, branch = edge["from"], edge["to"], edge.get("branch")
        issues += _missing_ends(doc, n, edge)
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
    doc = Document(document)
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
    doc = Document(document)
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
    doc = Document(document)
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
