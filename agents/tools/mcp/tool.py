"""A remote MCP server's tool as one of an agent's tools."""

from __future__ import annotations

from typing import Any

from agents.models import McpServerConnection
from agents.tools.base import NO_TOOL_CONTEXT, Tool, ToolContext, ToolFailed
from agents.tools.mcp.client import remote_call, split_tool_name


class McpTool(Tool):
    """Described by the schema fetched and validated when the connection was saved or
    refreshed; each call connects again (allowlist and guard checked again). Its output is
    untrusted data like every tool's."""

    def __init__(self, connection_id: int, name: str, remote: str, spec: dict[str, Any]) -> None:
        self.connection_id = connection_id
        self.name = name
        self.remote = remote
        self.description = str(spec.get("description") or remote)
        self.parameters = dict(spec["input_schema"])

    def run(self, arguments: dict[str, Any], context: ToolContext = NO_TOOL_CONTEXT) -> str:
        connection = McpServerConnection.objects.filter(pk=self.connection_id).first()
        if connection is None:
            raise ToolFailed(f"The MCP server connection behind '{self.name}' was removed.")
        return remote_call(connection, self.remote, arguments)


def mcp_tools(names: list[str]) -> tuple[dict[str, Tool], list[str]]:
    """The MCP tools among `names` (in the current workspace), and the names not found."""
    wanted = {n: split_tool_name(n) for n in names}
    connections = {
        c.name: c
        for c in McpServerConnection.objects.filter(
            name__in={parts[0] for parts in wanted.values() if parts is not None}
        )
    }
    found: dict[str, Tool] = {}
    missing: list[str] = []
    for name, parts in wanted.items():
        connection = connections.get(parts[0]) if parts is not None else None
        spec = None
        if connection is not None and parts is not None:
            spec = next((t for t in connection.tools if t.get("name") == parts[1]), None)
        if connection is None or spec is None or parts is None:
            missing.append(name)
            continue
        found[name] = McpTool(connection.pk, name, parts[1], spec)
    return found, missing
