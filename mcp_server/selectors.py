"""Reads: which agents of a workspace are MCP tools, and how a tool name maps back to one."""

from __future__ import annotations

import re
from typing import Any

from django.utils.text import slugify

from agents.models import Agent, AgentRun
from agents.services import MAX_INPUT_CHARS
from tenants.permissions import Access, Perm

TOOL_NAME = re.compile(r"^agent_(\d+)(?:_[a-z0-9_]*)?$")

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


def tool_name(agent: Agent) -> str:
    """`agent_<id>_<name>`: the id keeps it stable across renames, the name helps a model
    choose; at most 64 characters of [a-z0-9_] as MCP clients expect."""
    slug = slugify(agent.name).replace("-", "_")
    return f"agent_{agent.pk}_{slug}"[:64].rstrip("_")


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
