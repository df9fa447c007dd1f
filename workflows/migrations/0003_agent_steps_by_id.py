"""Agent steps hold their agent's id (`config.agent_id`); the name stays as a label.

Before, a step found its agent by name when it ran (the active agent with exactly that name and
the lowest id), so a second agent of the same name or a rename changed what the workflow ran.
This migration stores, in every saved version (versions are immutable everywhere else), the id
of the agent that rule picks today, so every workflow keeps running the agent it ran before.
A name no active agent has stays a name without an id: such a step already failed when run,
and the validators now say so when the workflow is saved or published ("choose the agent
again"); nothing is guessed.

It runs before agents.0012, which renames duplicate agent names: the names read here are the
ones the steps were written against. See docs/decisions.md §39.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

from django.db import migrations


def _agent_configs(definition: Any) -> Iterator[dict[str, Any]]:
    """The config of every agent step and every agent map body of a definition."""
    if not isinstance(definition, dict) or not isinstance(definition.get("steps"), list):
        return
    for step in definition["steps"]:
        if not isinstance(step, dict) or not isinstance(step.get("config"), dict):
            continue
        config = step["config"]
        if step.get("type") == "agent":
            yield config
        body = config.get("node") if step.get("type") == "map" else None
        if (
            isinstance(body, dict)
            and body.get("type") == "agent"
            and isinstance(body.get("config"), dict)
        ):
            yield body["config"]


def convert_definition(
    definition: Any, agent_id_for: Callable[[str], int | None]
) -> tuple[Any, bool]:
    """(the definition with `agent_id` added to each agent step that names an agent by name
    only, whether anything changed). `agent_id_for(name)` is the id the old engine would have
    run for that name, or None; the input is not modified."""
    converted = copy.deepcopy(definition)
    changed = False
    for config in _agent_configs(converted):
        name = config.get("agent")
        if "agent_id" in config or not isinstance(name, str):
            continue
        agent_id = agent_id_for(name)
        if agent_id is not None:
            config["agent_id"] = agent_id
            changed = True
    return (converted, True) if changed else (definition, False)


def old_engine_rule(agents: list[tuple[int, str]]) -> Callable[[str], int | None]:
    """What the engine ran for a name before: among active agents (id, name), exactly that
    name, the lowest id."""
    first: dict[str, int] = {}
    for pk, name in sorted(agents):
        first.setdefault(name, pk)
    return first.get


def agent_steps_by_id(apps, schema_editor):
    Agent = apps.get_model("agents", "Agent")
    WorkflowVersion = apps.get_model("workflows", "WorkflowVersion")
    agent_id_for = old_engine_rule(
        list(Agent.objects.filter(archived_at__isnull=True).values_list("pk", "name"))
    )
    versions = WorkflowVersion.objects.filter(definition__steps__contains=[{"type": "agent"}])
    maps = WorkflowVersion.objects.filter(
        definition__steps__contains=[{"type": "map", "config": {"node": {"type": "agent"}}}]
    )
    for version in (versions | maps).only("pk", "definition").iterator(chunk_size=500):
        definition, changed = convert_definition(version.definition, agent_id_for)
        if changed:
            WorkflowVersion.objects.filter(pk=version.pk).update(definition=definition)


class Migration(migrations.Migration):

    dependencies = [
        ("workflows", "0002_workflow_listing_version_id"),
        ("agents", "0011_workspace_foreign_keys_stay_in_the_workspace"),
    ]
    # Read the names before agents.0012 renames duplicates (see the docstring).
    run_before = [("agents", "0012_agent_name_unique")]

    operations = [migrations.RunPython(agent_steps_by_id, migrations.RunPython.noop)]
