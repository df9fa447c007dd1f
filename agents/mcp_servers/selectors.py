"""Reads for MCP server connections."""

from __future__ import annotations

from django.db.models import QuerySet

from agents.models import McpServerConnection
from tenants.permissions import Access, Perm


def mcp_connections_list(*, access: Access) -> QuerySet[McpServerConnection]:
    access.require(Perm.WORKSPACE_UPDATE)
    return McpServerConnection.objects.order_by("name")
