"""Using a library template in a workspace: create what its steps name and the workspace lacks
(the model alias `default`, the demo's agents, sub-workflows from their own templates), then the
workflow itself. The catalogue (`workflows.library`) only reads templates; this module writes.
"""

from __future__ import annotations

import copy
from typing import Any

from django.db import transaction

from agents.demo import DEMO_AGENTS
from agents.gateway import aliases
from agents.gateway.model_names import OFFLINE_EXAMPLE
from agents.models import Agent, ModelAlias
from agents.services import agent_create
from tenants.permissions import Access, Perm
from workflows import services
from workflows.library import DEFAULT_MODEL, Template, template_get, template_named
from workflows.models import Workflow, WorkflowVersion


def demo_agent_spec(name: str) -> dict[str, Any] | None:
    """The demo's settings for an agent (agents/demo.py), without its knowledge base and the
    search tool that needs one: created here, the agent has no documents yet."""
    spec = next((s for s in DEMO_AGENTS if s["name"] == name), None)
    if spec is None:
        return None
    config = {k: copy.deepcopy(v) for k, v in spec.items() if k != "knowledge"}
    config["tools"] = [t for t in config.get("tools", []) if t != "knowledge_search"]
    return config


def default_model_alias_ensure(access: Access) -> list[str]:
    """Make sure the workspace has the `default` model alias (the offline model) when the actor
    may add it; returns notes for the person saying what was done, or what to ask an admin."""
    if ModelAlias.objects.filter(name=DEFAULT_MODEL).exists():
        return []
    if not access.can(Perm.WORKSPACE_UPDATE):
        return [
            f"This workflow uses the model alias “{DEFAULT_MODEL}”, which this workspace does "
            "not have yet: ask an admin to add it under Models."
        ]
    aliases.alias_save(
        access=access,
        name=DEFAULT_MODEL,
        description="Added for workflow templates: the offline model until you pick a provider.",
        targets=[aliases.TargetSpec(kind="offline", model="demo")],
    )
    return [
        f"Added the model alias “{DEFAULT_MODEL}” (the offline model, no network): point it at "
        "a provider under Models for real answers."
    ]


def _ensure_agents(access: Access, names: tuple[str, ...]) -> list[str]:
    """Create the agents the template names that no active agent of the workspace has
    (ignoring case, as agent names are unique); saving the workflow binds each name to its id."""
    notes: list[str] = []
    for name in names:
        if Agent.objects.filter(name__iexact=name, archived_at__isnull=True).exists():
            continue
        spec = demo_agent_spec(name)
        if spec is None:
            notes.append(f"Create an agent named “{name}”: this workflow asks it.")
            continue
        model = DEFAULT_MODEL
        if not ModelAlias.objects.filter(name=DEFAULT_MODEL).exists():
            model = OFFLINE_EXAMPLE  # what `default` would point at; a member cannot add it
            notes.append(f"The agent “{name}” uses {OFFLINE_EXAMPLE}: pick a model on its page.")
        agent_create(access=access, model=model, **spec)
        notes.append(f"Created the agent “{name}”.")
    return notes


def _ensure_workflows(access: Access, names: tuple[str, ...], depth: int) -> list[str]:
    notes: list[str] = []
    for name in names:
        if Workflow.objects.filter(
            name=name, archived_at__isnull=True, active_version__isnull=False
        ).exists():
            continue
        child = template_named(name)
        if child is None or depth > 3:
            notes.append(f"Create a workflow named “{name}”: this workflow runs it.")
            continue
        notes += _prepare(access, child, depth + 1)
        services.workflow_create(
            access=access,
            name=child.name,
            description=child.description,
            category=child.category,
            definition=child.definition,
            source=WorkflowVersion.Source.TEMPLATE,
            note=f"From the template “{child.name}” (a sub-workflow of another template)",
            template_key=child.key,
        )
        notes.append(f"Created the workflow “{child.name}”, which this one runs.")
    return notes


def _prepare(access: Access, template: Template, depth: int) -> list[str]:
    notes: list[str] = []
    if template.models or template.agents:
        notes += default_model_alias_ensure(access)
    notes += _ensure_agents(access, template.agents)
    notes += _ensure_workflows(access, template.workflows, depth)
    return notes


def template_prepare(*, access: Access, template: Template) -> list[str]:
    """Create what the template's steps name and the workspace lacks: the model alias
    `default` (the offline model; admins only), the agents it asks (with the demo's
    settings) and the workflows it runs as sub-workflows (from their own templates). Returns a
    note per thing created or still missing. Runs in the current workspace schema; call it in
    the transaction that creates the workflow."""
    access.require(Perm.BUILD)
    return _prepare(access, template, 0)


def workflow_from_template(*, access: Access, key: str, name: str | None = None) -> Workflow:
    """A new workflow from a library template. Without `name` it takes the template's (with a
    number added if that name is taken); a given name must be free."""
    access.require(Perm.BUILD)
    template = template_get(key)
    with transaction.atomic():
        # What the steps name (the `default` alias, agents, sub-workflows) is created first,
        # in the same transaction: a template that then fails validation leaves nothing behind.
        notes = template_prepare(access=access, template=template)
        return services.workflow_create(
            access=access,
            name=name if name else services.workflow_free_name(template.name),
            description=template.description,
            category=template.category,
            definition=copy.deepcopy(template.definition),
            source=WorkflowVersion.Source.TEMPLATE,
            note=" ".join([f"From the template “{template.name}”.", *notes])[:200],
            template_key=template.key,
        )
