"""(9)–(10) The checks that look things up: built-in tools, and in the current workspace schema
agents, model aliases and sub-workflows."""

from __future__ import annotations

from typing import Any

from agents.models import Agent, ModelAlias, ProviderKind
from agents.tools.registry import BUILTIN_TOOLS
from workflows.agent_refs import active_by_name, agent_id_of
from workflows.models import Workflow, WorkflowVersion
from workflows.validators.document import Document, Issue


def _named(doc: Document, node_type: str, field: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(issue path, value, config) of every string `field` of steps (and map bodies) of
    `node_type`."""
    found = []
    for i, body_type, where, config, _in_body in doc.bodies():
        value = config.get(field)
        if body_type == node_type and isinstance(value, str) and value:
            found.append((f"{doc.label(i)}.{where}.{field}", value, config))
    return found


def check_tools(document: dict[str, Any]) -> list[Issue]:
    """(9a) Tool steps name a built-in tool and give the arguments it requires."""

    doc = Document(document)
    issues: list[Issue] = []
    for path, name, config in _named(doc, "tool", "tool"):
        tool = BUILTIN_TOOLS.get(name)
        if tool is None:
            issues.append(
                Issue(
                    path, f"there is no tool {name!r} (tools: {', '.join(sorted(BUILTIN_TOOLS))})"
                )
            )
            continue
        arguments = config.get("arguments")
        given = arguments if isinstance(arguments, dict) else {}
        base = path.rsplit(".", 1)[0]
        for required in tool.parameters.get("required", []):
            if required not in given:
                issues.append(
                    Issue(f"{base}.arguments.{required}", f"is required by the {name} tool")
                )
    return issues


def check_agents(document: dict[str, Any]) -> list[Issue]:
    """(9b) Agent steps hold an agent of this workspace that is not archived: by
    `config.agent_id`, or (a definition not yet saved: an import, a template, the API) by the
    name in `config.agent`, which saving binds to the id (workflows/agent_refs.py)."""
    from django.db.models.functions import Lower

    doc = Document(document)
    uses = [
        (f"{doc.label(i)}.{where}", config)
        for i, node_type, where, config, _ in doc.bodies()
        if node_type == "agent"
    ]
    if not uses:
        return []
    ids = {pk for _, c in uses if (pk := agent_id_of(c)) is not None}
    by_id = {a.pk: a for a in Agent.objects.filter(pk__in=ids)} if ids else {}
    names = [
        c["agent"] for _, c in uses if agent_id_of(c) is None and isinstance(c.get("agent"), str)
    ]
    active = active_by_name(names)
    lowered = {n.strip().lower() for n in names}
    archived = (
        set(
            Agent.objects.filter(archived_at__isnull=False)
            .annotate(lowered=Lower("name"))
            .filter(lowered__in=lowered)
            .values_list("lowered", flat=True)
        )
        if names
        else set()
    )
    issues = []
    for base, config in uses:
        pk = agent_id_of(config)
        name = config.get("agent")
        if pk is not None:
            agent = by_id.get(pk)
            if agent is None:
                was = f" (it was “{name}”)" if isinstance(name, str) and name else ""
                issues.append(
                    Issue(
                        f"{base}.agent_id",
                        f"there is no agent with id {pk} in this workspace{was}; choose the "
                        "agent again",
                    )
                )
            elif agent.archived_at is not None:
                issues.append(
                    Issue(
                        f"{base}.agent_id",
                        f"the agent {agent.name!r} is archived; choose another agent",
                    )
                )
        elif isinstance(name, str) and name:
            if name.strip().lower() in active:
                continue
            if name.strip().lower() in archived:
                issues.append(
                    Issue(f"{base}.agent", f"the agent {name!r} is archived; choose another agent")
                )
            else:
                issues.append(
                    Issue(f"{base}.agent", f"there is no agent named {name!r} in this workspace")
                )
        elif "agent_id" not in config and "agent" not in config:
            issues.append(Issue(f"{base}.agent_id", "is required: choose the agent this step asks"))
    return issues


def check_models(document: dict[str, Any]) -> list[Issue]:
    """(9c) A model written as `provider:model` names a provider we support (unless it is an
    alias of this workspace). Plain names are aliases, resolved when the step runs."""

    doc = Document(document)
    uses = [u for t in ("llm", "router") for u in _named(doc, t, "model") if ":" in u[1]]
    if not uses:
        return []
    aliases = set(
        ModelAlias.objects.filter(name__in={n for _, n, _ in uses}).values_list("name", flat=True)
    )
    issues = []
    for path, name, _ in uses:
        provider, _, model = name.partition(":")
        if name in aliases or (provider in ProviderKind.values and model):
            continue
        issues.append(
            Issue(
                path,
                f"{name!r} is neither a model alias of this workspace nor provider:model "
                f"(providers: {', '.join(ProviderKind.values)})",
            )
        )
    return issues


def check_sub_workflows(document: dict[str, Any]) -> list[Issue]:
    """(10) Sub-workflow steps name a workflow of this workspace that is not archived, and the
    pinned version exists (or, unpinned, the workflow has a published version)."""

    doc = Document(document)
    uses = _named(doc, "sub_workflow", "workflow")
    if not uses:
        return []
    names = {name for _, name, _ in uses}
    workflows: dict[str, Workflow] = {}
    for workflow in Workflow.objects.filter(name__in=names, archived_at__isnull=True).order_by(
        "pk"
    ):
        workflows.setdefault(workflow.name, workflow)
    numbers: set[tuple[int, int]] = set(
        WorkflowVersion.objects.filter(workflow__in=workflows.values()).values_list(
            "workflow_id", "number"
        )
    )
    issues = []
    for path, name, config in uses:
        target = workflows.get(name)
        if target is None:
            issues.append(Issue(path, f"there is no active workflow named {name!r} here"))
            continue
        number = config.get("version")
        base = path.rsplit(".", 1)[0]
        if isinstance(number, int) and not isinstance(number, bool):
            if (target.pk, number) not in numbers:
                issues.append(Issue(f"{base}.version", f"{name!r} has no version {number}"))
        elif target.active_version_id is None:
            issues.append(Issue(path, f"{name!r} has no published version; pin a version"))
    return issues
