"""What uses an agent, for the warnings on renaming or archiving it ("Used by 3 workflows").

Agents sit below workflows (docs/STYLE layers), so they cannot look workflows up themselves:
an app above registers a finder in its `AppConfig.ready()`:

    references.register(workflow_uses_of_agent)   # (agent_ids, workspace_slug) -> {id: [Use]}

`agent_uses(...)` asks every finder, in the current workspace schema.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Use:
    kind: str  # "workflow"
    object_id: int
    label: str  # what a person calls it, e.g. the workflow's name
    url: str  # its page


Finder = Callable[[list[int], str], dict[int, list[Use]]]
_finders: list[Finder] = []


def register(finder: Finder) -> None:
    if finder not in _finders:
        _finders.append(finder)


def agent_uses(agent_ids: Iterable[int], *, workspace_slug: str) -> dict[int, list[Use]]:
    """Every use of each agent (an agent nothing uses maps to [])."""
    ids = sorted(set(agent_ids))
    found: dict[int, list[Use]] = {pk: [] for pk in ids}
    if not ids:
        return found
    for finder in _finders:
        for pk, uses in finder(ids, workspace_slug).items():
            found.setdefault(pk, []).extend(uses)
    return found


def uses_of(agent_id: int, *, workspace_slug: str) -> list[Use]:
    return agent_uses([agent_id], workspace_slug=workspace_slug)[agent_id]
