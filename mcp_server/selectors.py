"""Reads: which agents and workflows of a workspace are MCP tools, how a tool name maps back to
one, and how far the run a call started has got."""

from __future__ import annotations

import re
from typing import Any

from django.utils.text import slugify

from agents.models import Agent, AgentRun
from agents.services import MAX_INPUT_CHARS
from tenants.permissions import Access, Perm
from workflows.models import RunStatus, StepRun, StepStatus, Workflow, WorkflowRun
from workflows.runnable import inputs_json_schema
from workflows.selectors import version_problems

TOOL_NAME = re.compile(r"^agent_(\d+)(?:_[a-z0-9_]*)?$")
WORKFLOW_TOOL_NAME = re.compile(r"^workflow_(\d+)(?:_[a-z0-9_]*)?$")

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "input": {
            "type": "string",
            "description": "What to ask the agent (its run input).",
            "minLength": 1,
            "maxLength": MAX_INPUT_CHARS,
        }
    },
    "required": ["input"],
    "additionalProperties": False,
}


def _named(kind: str, pk: int, name: str) -> str:
    slug = slugify(name).replace("-", "_")
    return f"{kind}_{pk}_{slug}"[:64].rstrip("_")


def tool_name(agent: Agent) -> str:
    """`agent_<id>_<name>`: the id keeps it stable across renames, the name helps a model
    choose; at most 64 characters of [a-z0-9_] as MCP clients expect."""
    return _named("agent", agent.pk, agent.name)


def workflow_tool_name(workflow: Workflow) -> str:
    """`workflow_<id>_<name>`, by the same rules as an agent's."""
    return _named("workflow", workflow.pk, workflow.name)


def workflow_input_schema(workflow: Workflow) -> dict[str, Any]:
    """The tool's input schema: the published version's declared inputs (workflows.runnable)."""
    version = workflow.active_version  # exposed_workflows lists only published ones
    return inputs_json_schema(version.definition if version is not None else {})


def exposed_agents(*, access: Access) -> list[Agent]:
    """Active agents with a version whose owners chose to offer them over MCP."""
    access.require(Perm.RUN)
    return list(
        Agent.objects.filter(
            mcp_exposed=True, archived_at__isnull=True, current_version__isnull=False
        ).order_by("name", "id")
    )


def exposed_agent_for_tool(*, access: Access, name: str) -> Agent | None:
    access.require(Perm.RUN)
    match = TOOL_NAME.match(name)
    if match is None:
        return None
    return Agent.objects.filter(
        pk=int(match.group(1)),
        mcp_exposed=True,
        archived_at__isnull=True,
        current_version__isnull=False,
    ).first()


def run_outcome(*, run_id: int) -> AgentRun:
    return AgentRun.objects.only("id", "status", "output", "error", "output_data").get(pk=run_id)


def _exposed_workflows() -> Any:
    return Workflow.objects.filter(
        mcp_exposed=True, archived_at__isnull=True, active_version__isnull=False
    ).select_related("active_version")


def _runnable(workflow: Workflow) -> bool:
    """The published version still passes the checks: what it names (agents, sub-workflows,
    models) may have gone since it was published. One validation per workflow listed."""
    version = workflow.active_version
    return version is not None and not version_problems(version)


def exposed_workflows(*, access: Access) -> list[Workflow]:
    """Active workflows whose owners chose to offer them over MCP and whose published version
    would run."""
    access.require(Perm.RUN)
    return [w for w in _exposed_workflows().order_by("name", "id") if _runnable(w)]


def exposed_workflow_for_tool(*, access: Access, name: str) -> Workflow | None:
    access.require(Perm.RUN)
    match = WORKFLOW_TOOL_NAME.match(name)
    if match is None:
        return None
    workflow: Workflow | None = _exposed_workflows().filter(pk=int(match.group(1))).first()
    return workflow if workflow is not None and _runnable(workflow) else None


def workflow_run_outcome(*, run_id: int) -> WorkflowRun:
    return WorkflowRun.objects.only("id", "workflow_id", "status", "output", "error").get(pk=run_id)


def workflow_run_waiting_step(*, run_id: int) -> StepRun | None:
    """The first step a waiting run waits on (an approval or a webhook wait)."""
    return (
        StepRun.objects.filter(
            run_id=run_id,
            run__status=RunStatus.WAITING,
            status=StepStatus.WAITING,
            parent__isnull=True,
        )
        .only("id", "node_id", "node_type")
        .order_by("id")
        .first()
    )
