"""Writes for MCP server connections: saved only when the server answers through the guard
and the allowlist and its tools are valid; the credential is encrypted and never shown back."""

from __future__ import annotations

import re

from django.db import transaction
from django.utils import timezone

from agents.models import McpServerConnection
from agents.tools.base import ToolFailed
from agents.tools.mcp.client import remote_tools
from core.exceptions import NotFound, ValidationFailed
from tenants.permissions import Access, Perm

NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|_(?!_)){0,19}$")
HEADER = re.compile(r"^[A-Za-z0-9-]{1,100}$")


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, fields={field: [message]})


def _fetch(connection: McpServerConnection) -> list[str]:
    """Fetch and store its tools; the problems with tools that were left out."""
    try:
        tools, problems = remote_tools(connection)
    except ToolFailed as exc:
        raise _invalid("url", str(exc)) from exc
    connection.tools = tools
    connection.fetched_at = timezone.now()
    return problems


def mcp_connection_create(
    *,
    access: Access,
    name: str,
    url: str,
    header_name: str = "Authorization",
    credential: str = "",
) -> tuple[McpServerConnection, list[str]]:
    """Connect, list and validate its tools, save. Returns the connection and what was left
    out. Owners and admins (like the host allowlist the URL must be on)."""
    access.require(Perm.WORKSPACE_UPDATE)
    name = (name or "").strip()
    if not NAME.match(name):
        raise _invalid(
            "name", "1–20 of a-z, 0-9 and single underscores, starting a letter or digit."
        )
    if McpServerConnection.objects.filter(name=name).exists():
        raise _invalid("name", "A connection with this name already exists.")
    header_name = (header_name or "").strip()
    if credential and not HEADER.match(header_name):
        raise _invalid("header_name", "A header name: letters, digits and hyphens.")
    connection = McpServerConnection(name=name, url=(url or "").strip(), header_name=header_name)
    connection.set_credential(credential)
    problems = _fetch(connection)
    connection.save()
    return connection, problems


@transaction.atomic
def mcp_connection_refresh(*, access: Access, connection_id: int) -> list[str]:
    access.require(Perm.WORKSPACE_UPDATE)
    connection = McpServerConnection.objects.select_for_update().filter(pk=connection_id).first()
    if connection is None:
        raise NotFound("No MCP server connection with that id in this workspace.")
    problems = _fetch(connection)
    connection.save(update_fields=["tools", "fetched_at"])
    return problems


def mcp_connection_delete(*, access: Access, connection_id: int) -> None:
    access.require(Perm.WORKSPACE_UPDATE)
    deleted, _ = McpServerConnection.objects.filter(pk=connection_id).delete()
    if not deleted:
        raise NotFound("No MCP server connection with that id in this workspace.")
