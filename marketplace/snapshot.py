"""Snapshots: what a listing version stores, taken in the publisher's schema, and the pinned
copy an install creates in the installing workspace's schema.

The format is shared with the catalogue importer:

    {"agent": {name, description, category, model, system_prompt, ...}}        # agent listing
    {"workflow": <active WorkflowVersion.definition>, "agents": [agent spec, ...]}

A snapshot never carries secrets or knowledge-base contents: `knowledge_base_ids` is dropped
(and the `knowledge_search` tool with it), and a model is kept only as an alias name; a
`provider:model` string becomes `default` (it may reveal a private endpoint).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from agents.gateway.model_names import OFFLINE_EXAMPLE, model_problem
from agents.models import Agent, ModelAlias
from agents.services import agent_create, agent_free_name
from agents.settings_schema import PROFILE_FIELDS, SPEC_FIELDS
from core.exceptions import NotFound, ValidationFailed
from marketplace.models import Listing, ListingVersion
from tenants.permissions import Access
from workflows import agent_refs
from workflows.library.prepare import default_model_alias_ensure
from workflows.models import Workflow, WorkflowVersion
from workflows.services import workflow_create

DEFAULT_MODEL = "default"
KNOWLEDGE_TOOL = "knowledge_search"
COPY_SUFFIX = " (from marketplace)"
WORKFLOW_NAME_MAX = 80


def _public_model(model: str, notes: list[str] | None) -> str:
    if model and ":" not in model and ModelAlias.objects.filter(name=model).exists():
        return model
    if notes is not None and model != DEFAULT_MODEL:
        notes.append(f"The model “{model}” is published as the alias “{DEFAULT_MODEL}”.")
    return DEFAULT_MODEL


def agent_spec(agent: Agent, *, notes: list[str] | None = None) -> dict[str, Any]:
    """The agent's current version as a spec; call it in the publisher's schema."""
    version = agent.current_version
    if version is None:
        raise ValidationFailed(
            f"The agent “{agent.name}” has no saved version to publish.",
            fields={"source_id": ["This agent has no version yet."]},
        )
    tools = [t for t in (version.tools or []) if t != KNOWLEDGE_TOOL]
    if notes is not None and len(tools) != len(version.tools or []):
        notes.append(
            f"“{agent.name}”: the knowledge_search tool was removed (knowledge bases stay in "
            "the workspace)."
        )
    cap = version.max_cost_per_run_usd
    return {
        "name": agent.name,
        "description": agent.description,
        "category": agent.category,
        "model": _public_model(version.model, notes),
        "system_prompt": version.system_prompt,
        "temperature": version.temperature,
        "max_tokens": version.max_tokens,
        "tools": tools,
        "memory_mode": version.memory_mode,
        "memory_turns": version.memory_turns,
        "max_tool_calls": version.max_tool_calls,
        "max_cost_per_run_usd": str(cap) if cap is not None else None,
        "blocked_patterns": list(version.blocked_patterns or []),
        "output_schema": copy.deepcopy(version.output_schema),
        "cache_enabled": version.cache_enabled,
        "cache_semantic": version.cache_semantic,
        "cache_verify": version.cache_verify,
        "cache_per_user": version.cache_per_user,
    }


def agent_snapshot(agent: Agent, *, notes: list[str] | None = None) -> dict[str, Any]:
    return {"agent": agent_spec(agent, notes=notes)}


def step_bodies(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(type, config) of every step and every map body; configs are the document's own dicts."""
    for step in document.get("steps") or []:
        config = step.get("config") or {}
        yield step.get("type", ""), config
        if step.get("type") == "map":
            body = config.get("node") or {}
            yield body.get("type", ""), body.get("config") or {}


def workflow_snapshot(workflow: Any, *, notes: list[str] | None = None) -> dict[str, Any]:
    """The active version's definition and the specs of the agents its steps ask; call it in
    the publisher's schema."""
    if workflow.active_version is None:
        raise ValidationFailed(
            f"The workflow “{workflow.name}” has no published version.",
            fields={"source_id": ["Publish a version of this workflow first."]},
        )
    # Ids mean nothing in the installing workspace: the snapshot names the agents (their
    # current names), and an install binds those names to the copies it creates.
    document = agent_refs.for_export(workflow.active_version.definition)
    agent_names: list[str] = []
    for node_type, config in step_bodies(document):
        if node_type == "sub_workflow":
            raise ValidationFailed(
                "Workflows with sub-workflow steps cannot be published yet.",
                fields={"source_id": ["This workflow runs another workflow."]},
            )
        if node_type == "agent" and isinstance(config.get("agent"), str):
            agent_names.append(config["agent"])
        model = config.get("model")
        if isinstance(model, str) and model:
            config["model"] = _public_model(model, notes)
    specs = []
    for name in dict.fromkeys(agent_names):
        agent = Agent.objects.filter(name__iexact=name, archived_at__isnull=True).first()
        if agent is None:
            raise ValidationFailed(
                f"The workflow asks the agent “{name}”, which this workspace does not have "
                "(or has archived).",
                fields={"source_id": [f"No active agent named “{name}”."]},
            )
        if agent.listing_version_id is not None and _paid(agent.listing_version_id):
            raise ValidationFailed(
                f"The workflow's step agent “{agent.name}” is an installed copy of a paid "
                "marketplace listing: publishing it would give away what its creator sells.",
                fields={"source_id": [f"“{agent.name}” is a paid listing's copy."]},
            )
        specs.append(agent_spec(agent, notes=notes))
    return {"workflow": document, "agents": specs}


def _paid(listing_version_id: int) -> bool:
    return (
        ListingVersion.objects.filter(pk=listing_version_id)
        .exclude(pricing=Listing.Pricing.FREE)
        .exists()
    )


def required_tools(kind: str, definition: dict[str, Any]) -> list[str]:
    specs = [definition["agent"]] if kind == "agent" else definition.get("agents", [])
    tools = {t for spec in specs for t in spec.get("tools") or []}
    if kind == "workflow":
        for node_type, config in step_bodies(definition["workflow"]):
            if node_type == "tool" and isinstance(config.get("tool"), str):
                tools.add(config["tool"])
    return sorted(tools)


def models_named(kind: str, definition: dict[str, Any]) -> list[str]:
    """The model aliases a snapshot names (agents' models and model steps')."""
    specs = [definition["agent"]] if kind == "agent" else definition.get("agents", [])
    names = {spec.get("model") or DEFAULT_MODEL for spec in specs}
    if kind == "workflow":
        for _, config in step_bodies(definition["workflow"]):
            if isinstance(config.get("model"), str) and config["model"]:
                names.add(config["model"])
    return sorted(names)


def providers_of(model_names: list[str]) -> list[str]:
    """Provider kinds behind these aliases in the current schema (kinds only, no endpoints)."""
    kinds = ModelAlias.objects.filter(name__in=model_names).values_list("targets__kind", flat=True)
    return sorted({k for k in kinds if k})


# --- installing ------------------------------------------------------------------------------


def _free_agent_name(name: str) -> str:
    """The name, or "<name> (from marketplace)", "… (2)": free among active agents, ignoring
    case (agent names are unique that way)."""

    return agent_free_name(name, suffix=COPY_SUFFIX)


def _free_workflow_name(name: str) -> str:

    def taken(candidate: str) -> bool:
        return Workflow.objects.filter(name__iexact=candidate, archived_at__isnull=True).exists()

    name = name.strip()[:WORKFLOW_NAME_MAX] or "Workflow"
    if not taken(name):
        return name
    for number in range(1, 1000):
        suffix = COPY_SUFFIX if number == 1 else f"{COPY_SUFFIX} ({number})"
        candidate = name[: WORKFLOW_NAME_MAX - len(suffix)] + suffix
        if not taken(candidate):
            return candidate
    raise ValidationFailed("No free workflow name left.", fields={"name": ["All names are taken."]})


def ensure_model(access: Access, model: str) -> tuple[str, list[str]]:
    """The alias the copy uses: `model` if this workspace has it, else `default` (created the
    way the template library creates it, when the actor may)."""
    if model != DEFAULT_MODEL and ModelAlias.objects.filter(name=model).exists():
        return model, []
    notes = [] if model == DEFAULT_MODEL else [f"Uses “{DEFAULT_MODEL}” instead of “{model}”."]
    return DEFAULT_MODEL, notes + default_model_alias_ensure(access)


def agent_config(access: Access, spec: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The settings `agent_create` / `agent_update` take for a spec, in the current schema."""

    model, notes = ensure_model(access, spec.get("model") or DEFAULT_MODEL)
    if model_problem(model):  # `default` is missing and this member may not add it
        model = OFFLINE_EXAMPLE
        notes.append(f"Uses {OFFLINE_EXAMPLE} until a model is picked on the agent's page.")
    cap = spec.get("max_cost_per_run_usd")
    config = {
        field: copy.deepcopy(spec[field])
        for field in SPEC_FIELDS
        if field in spec and field not in PROFILE_FIELDS and field != "model"
    }
    config["model"] = model
    config["max_cost_per_run_usd"] = Decimal(str(cap)) if cap is not None else None
    config["tools"] = [t for t in spec.get("tools") or [] if t != KNOWLEDGE_TOOL]
    config["knowledge_base_ids"] = []
    return config, notes


def agent_copy_create(access: Access, spec: dict[str, Any], listing_version_id: int) -> Agent:

    config, _ = agent_config(access, spec)
    agent = agent_create(
        access=access,
        name=_free_agent_name(spec.get("name") or "Agent"),
        description=spec.get("description") or "",
        category=spec.get("category") or "",
        **config,
    )
    Agent.objects.filter(pk=agent.pk).update(listing_version_id=listing_version_id)
    return agent


def rename_agents(document: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A copy of the workflow document whose agent steps name the renamed agents (saving it
    binds each name to that agent's id). An `agent_id` is dropped: it would be another
    workspace's."""
    document = copy.deepcopy(document)
    for node_type, config in step_bodies(document):
        if node_type != "agent":
            continue
        config.pop("agent_id", None)
        if config.get("agent") in names:
            config["agent"] = names[config["agent"]]
    return document


def workflow_models(access: Access, document: dict[str, Any]) -> dict[str, Any]:
    """Model steps' aliases made usable in the current schema (in place; returns it)."""
    for _, config in step_bodies(document):
        if isinstance(config.get("model"), str) and config["model"]:
            config["model"], _ = ensure_model(access, config["model"])
    return document


def install_snapshot(
    access: Access,
    definition: dict[str, Any],
    kind: str,
    listing_version_id: int,
    *,
    name: str = "",
) -> tuple[str, int]:
    """Create the pinned copy in the current (installing) schema; returns (kind, id). Agents
    are always new copies (named "<name> (from marketplace)" when the name is taken)."""

    if kind == "agent":
        agent = agent_copy_create(access, definition["agent"], listing_version_id)
        return "agent", agent.pk
    if kind != "workflow":
        raise NotFound(f"Unknown listing kind “{kind}”.")
    names = {}
    for spec in definition.get("agents", []):
        names[spec["name"]] = agent_copy_create(access, spec, listing_version_id).name
    document = workflow_models(access, rename_agents(definition["workflow"], names))
    workflow = workflow_create(
        access=access,
        name=_free_workflow_name(name or "Workflow"),
        definition=document,
        source=WorkflowVersion.Source.IMPORT,
        note="Installed from the marketplace.",
    )
    Workflow.objects.filter(pk=workflow.pk).update(listing_version_id=listing_version_id)
    return "workflow", workflow.pk
