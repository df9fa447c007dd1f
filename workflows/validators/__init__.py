"""Every check a workflow definition must pass before it is saved, imported, generated or sent
through the API (docs/workflows.md, "Validation").

    issues = validate(document)        # [] when valid; never raises, whatever `document` is
    validate_or_raise(document)        # ValidationFailed(fields={"definition": [...]})
    structure_or_raise(document)       # what even a draft must pass (decision 93)

Each check is a function of its own (`check_<what>(document) -> list[Issue]`). `validate` runs
the schema check first; when the document's shape is too broken for the others to mean
anything (not an object, steps without ids or types, edges that are not objects) it stops
there, otherwise it runs every check and reports every problem at once. The checks after the
schema accept any document that passed the schema's shape test and ignore what it already
reported (a wrong type, an unknown endpoint), so one mistake is reported once.

An issue's path names the step and the field: `steps[2] (classify).config.prompt`. Checks that
look things up (agents, tools, sub-workflows, model aliases) read the current workspace schema.

A draft the builder saves incomplete need only pass `check_structure`: a sound shape (every
step an object with an id and a known type, every edge an object naming two ids), unique step
ids and edges between steps that exist. Anything less would not be a graph the builder can show
and edit; everything else is a marker on the draft and blocks only publishing and running.

Modules, each importing only `document` (the `Issue`, the document view, `graph_checkable`):
`schema` (1), `graph` (2–6: ids, edges, cycles, entry, reachability), `expressions` (8 parse,
7 references resolve), `lookups` (9 tools, agents, models; 10 sub-workflows), `limits` (11).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.exceptions import ValidationFailed
from workflows.validators.document import Issue, graph_checkable, shape_issues
from workflows.validators.expressions import check_expressions, check_references
from workflows.validators.graph import (
    check_acyclic,
    check_edge_ends,
    check_edges,
    check_reachable,
    check_single_entry,
    check_unique_ids,
)
from workflows.validators.limits import check_limits
from workflows.validators.lookups import (
    check_agents,
    check_models,
    check_sub_workflows,
    check_tools,
)
from workflows.validators.schema import check_schema

__all__ = [
    "CHECKS",
    "Issue",
    "check_acyclic",
    "check_agents",
    "check_edge_ends",
    "check_edges",
    "check_expressions",
    "check_limits",
    "check_models",
    "check_reachable",
    "check_references",
    "check_schema",
    "check_single_entry",
    "check_structure",
    "check_sub_workflows",
    "check_tools",
    "check_unique_ids",
    "graph_checkable",
    "structure_or_raise",
    "validate",
    "validate_or_raise",
]

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


def _raise_if(issues: list[Issue], lead: str) -> None:
    """ValidationFailed naming the first issue (and how many more) and listing them all under
    `definition`, when there are any."""
    if not issues:
        return
    more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
    raise ValidationFailed(
        f"{lead}: {issues[0]}{more}.", fields={"definition": [str(issue) for issue in issues]}
    )


def validate_or_raise(document: Any) -> None:
    _raise_if(validate(document), "The workflow definition is not valid")


def check_structure(document: Any) -> list[Issue]:
    """What every saved version passes, an incomplete draft too (see the module docstring).
    Never raises on bad input."""
    issues = shape_issues(document)
    if issues:
        return issues
    return check_unique_ids(document) + check_edge_ends(document)


def structure_or_raise(document: Any) -> None:
    _raise_if(check_structure(document), "The workflow definition cannot be saved, even as a draft")
