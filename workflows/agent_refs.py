"""Agent steps hold their agent by id: `config.agent_id` is the reference, `config.agent` the
agent's name as a label (docs/workflows.md, "Agent steps"; docs/decisions.md §39).

    bind(definition)           # names → ids (ignoring case), labels refreshed; before storing
    for_export(definition)     # ids → names, ids dropped; for files and marketplace snapshots
    agent_configs(definition)  # the config of every agent step and agent map body

A stored version always carries the id, so renaming an agent, or creating another agent of the
same name, never changes what a workflow runs. Ids mean nothing in another workspace, so what
leaves the workspace (an export, a marketplace snapshot) carries names only, and what comes in
(an import, an install, a template, a generated or API definition without ids) is bound by name
when it is saved: names are unique among active agents, ignoring case. A name that matches no
active agent is left unbound and the validators name the step. Call these in the workspace's
schema.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import OuterRef, Q, Subquery
from django.db.models.functions import Lower
from django.urls import reverse

from agents.models import Agent
from agents.references import Use
from workflows.models import Workflow, WorkflowVersion


def agent_configs(definition: Any) -> Iterator[dict[str, Any]]:
    """The config dict of every agent step and every agent map body (the document's own)."""
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


def agent_id_of(config: dict[str, Any]) -> int | None:
    value = config.get("agent_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def active_by_name(names: Iterable[str]) -> dict[str, Agent]:
    """Lower-cased name → the active agent of that name (at most one: names are unique)."""
    wanted = {n.strip().lower() for n in names if isinstance(n, str) and n.strip()}
    if not wanted:
        return {}
    found: dict[str, Agent] = {}
    agents = (
        Agent.objects.filter(archived_at__isnull=True)
        .annotate(lowered=Lower("name"))
        .filter(lowered__in=wanted)
        .order_by("pk")
    )
    for agent in agents:
        found.setdefault(agent.name.lower(), agent)
    return found


def bind(definition: Any) -> Any:
    """A copy of `definition` whose agent steps carry `agent_id`: a step with an id keeps it
    (its label becomes the agent's current name); a step with a name only gets the id of the
    active agent of that name, ignoring case. Unknown ids and names are left for the validators
    to report."""
    document = copy.deepcopy(definition)
    configs = list(agent_configs(document))
    if not configs:
        return document
    ids = {pk for c in configs if (pk := agent_id_of(c)) is not None}
    by_id = {a.pk: a for a in Agent.objects.filter(pk__in=ids)} if ids else {}
    by_name = active_by_name(
        c["agent"] for c in configs if agent_id_of(c) is None and isinstance(c.get("agent"), str)
    )
    for config in configs:
        pk = agent_id_of(config)
        if pk is not None:
            if pk in by_id:
                config["agent"] = by_id[pk].name
            continue
        name = config.get("agent")
        agent = by_name.get(name.strip().lower()) if isinstance(name, str) else None
        if agent is not None:
            config["agent_id"] = agent.pk
            config["agent"] = agent.name
    return document


def for_export(definition: Any) -> Any:
    """A copy of `definition` that names agents instead of holding their ids (the agent's
    current name; the stored label if the agent is gone)."""
    document = copy.deepcopy(definition)
    configs = list(agent_configs(document))
    ids = {pk for c in configs if (pk := agent_id_of(c)) is not None}
    names = dict(Agent.objects.filter(pk__in=ids).values_list("pk", "name")) if ids else {}
    for config in configs:
        pk = agent_id_of(config)
        if pk in names:
            config["agent"] = names[pk]
        config.pop("agent_id", None)
    return document


def agent_ids(definition: Any) -> set[int]:
    return {pk for c in agent_configs(definition) if (pk := agent_id_of(c)) is not None}


def _holding(agent_id: int) -> Q:
    """Versions whose steps (or map bodies) hold `agent_id` (jsonb containment, indexed by
    nothing but cheap: it reads the candidate rows only)."""
    return Q(definition__steps__contains=[{"config": {"agent_id": agent_id}}]) | Q(
        definition__steps__contains=[{"config": {"node": {"config": {"agent_id": agent_id}}}}]
    )


def workflow_uses_of_agents(wanted: list[int], workspace_slug: str) -> dict[int, list[Use]]:
    """For `agents.references`: the workflows (not archived) whose published version or latest
    saved version has an agent step holding one of these agents."""

    if not wanted:
        return {}
    newest = WorkflowVersion.objects.filter(workflow=OuterRef("pk")).order_by("-number")
    workflows = list(
        Workflow.objects.filter(archived_at__isnull=True)
        .annotate(latest_id=Subquery(newest.values("pk")[:1]))
        .order_by("name", "pk")
    )
    current = {w.pk: {w.active_version_id, w.latest_id} - {None} for w in workflows}
    version_ids = set().union(*current.values()) if current else set()
    holding = Q()
    for agent_id in wanted:
        holding |= _holding(agent_id)
    held = {
        pk: agent_ids(definition) & set(wanted)
        for pk, definition in WorkflowVersion.objects.filter(
            holding, pk__in=version_ids
        ).values_list("pk", "definition")
    }
    found: dict[int, list[Use]] = {}
    for workflow in workflows:
        agents_held = set().union(*(held.get(v, set()) for v in current[workflow.pk]))
        if not agents_held:
            continue
        url = reverse(
            "workflow_detail",
            kwargs={"workspace_slug": workspace_slug, "workflow_id": workflow.pk},
        )
        for agent_id in sorted(agents_held):
            found.setdefault(agent_id, []).append(
                Use(kind="workflow", object_id=workflow.pk, label=workflow.name, url=url)
            )
    return found
