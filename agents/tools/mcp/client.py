"""Talking to a remote MCP server with the official `mcp` client, Streamable HTTP only (no
local processes, ever). Every connection goes through the outbound guard (each address checked,
the socket pinned to it) after the URL passed the workspace allowlist (`check_target`)."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import jsonschema
import mcp_types as types
from django.conf import settings
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agents.models import McpServerConnection
from agents.outbound.selectors import allowed_host_entries
from agents.tools.base import ToolFailed
from agents.tools.http.targets import check_target
from core.outbound_guard import guarded_async_client, refusal_in

PREFIX = "mcp__"
REMOTE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
MAX_TOOLS = 50
MAX_DESCRIPTION = 1000
MAX_RESULT_CHARS = 20_000


def tool_name(connection: McpServerConnection, remote: str) -> str:
    """What the agent (and the model) calls it: `mcp__<connection>__<remote name>`."""
    return f"{PREFIX}{connection.name}__{remote}"


def split_tool_name(name: str) -> tuple[str, str] | None:
    if not name.startswith(PREFIX) or "__" not in name[len(PREFIX) :]:
        return None
    connection, remote = name[len(PREFIX) :].split("__", 1)
    return connection, remote


def _headers(connection: McpServerConnection) -> dict[str, str]:
    secret = connection.credential()
    if not secret or not connection.header_name:
        return {}
    if connection.header_name.lower() == "authorization" and " " not in secret:
        secret = f"Bearer {secret}"
    return {connection.header_name: secret}


def _checked(connection: McpServerConnection) -> None:
    """The URL on the allowlist and resolving to public addresses (ToolFailed otherwise)."""
    check_target(connection.url, allowed_host_entries())


def _failure(connection: McpServerConnection, exc: BaseException) -> ToolFailed:
    refusal = refusal_in(exc)
    if refusal is not None:
        return ToolFailed(f"Refused: the MCP server '{connection.name}': {refusal.message}")
    leaf: BaseException = exc
    while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
        leaf = leaf.exceptions[0]
    refusal = refusal_in(leaf)
    if refusal is not None:
        return ToolFailed(f"Refused: the MCP server '{connection.name}': {refusal.message}")
    return ToolFailed(
        f"The MCP server '{connection.name}' could not be used: {type(leaf).__name__}: {leaf}"
    )


async def _with_client(connection: McpServerConnection, headers: dict[str, str], body: Any) -> Any:
    timeout = float(settings.MCP_CLIENT_TIMEOUT_SECONDS)
    http = guarded_async_client(timeout=timeout, headers=headers)
    with anyio.fail_after(timeout):
        async with http, Client(streamable_http_client(connection.url, http_client=http)) as c:
            return await body(c)


def _run(connection: McpServerConnection, body: Any) -> Any:
    _checked(connection)
    headers = _headers(connection)
    try:
        return anyio.run(_with_client, connection, headers, body)
    except ToolFailed:
        raise
    except TimeoutError as exc:
        raise ToolFailed(
            f"The MCP server '{connection.name}' did not answer within "
            f"{settings.MCP_CLIENT_TIMEOUT_SECONDS:g} s."
        ) from exc
    except Exception as exc:  # the SDK's and httpx's errors, often in exception groups
        raise _failure(connection, exc) from exc


def validated_tools(tools: list[types.Tool]) -> tuple[list[dict[str, Any]], list[str]]:
    """The tools we can offer (name, description, input schema checked as JSON Schema with an
    object at the root), and why each other one was left out."""
    kept: list[dict[str, Any]] = []
    problems: list[str] = []
    for tool in tools:
        if len(kept) >= MAX_TOOLS:
            problems.append(f"More than {MAX_TOOLS} tools: the rest were left out.")
            break
        if not REMOTE_NAME.match(tool.name):
            problems.append(f"'{tool.name[:60]}': a tool name must be 1–40 of A-Z a-z 0-9 _ -.")
            continue
        schema = tool.input_schema
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            problems.append(
                f"'{tool.name}': its input schema is not valid JSON Schema: {exc.message}"
            )
            continue
        if schema.get("type") != "object":
            problems.append(f"'{tool.name}': its input schema must describe an object.")
            continue
        kept.append(
            {
                "name": tool.name,
                "description": (tool.description or tool.title or tool.name)[:MAX_DESCRIPTION],
                "input_schema": schema,
            }
        )
    return kept, problems


def remote_tools(connection: McpServerConnection) -> tuple[list[dict[str, Any]], list[str]]:
    """List the server's tools (ToolFailed when it cannot be reached or is refused)."""

    async def body(client: Client) -> list[types.Tool]:
        return (await client.list_tools()).tools

    return validated_tools(_run(connection, body))


def _as_text(result: types.CallToolResult) -> str:
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        else:
            parts.append(f"[{block.type} content left out]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n".join(parts)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f"\n[truncated at {MAX_RESULT_CHARS} characters]"
    return text


def remote_call(connection: McpServerConnection, remote: str, arguments: dict[str, Any]) -> str:
    """Call one tool; its text (untrusted data, as any tool's output), or ToolFailed."""

    async def body(client: Client) -> types.CallToolResult:
        result = await client.call_tool(remote, arguments)
        if not isinstance(result, types.CallToolResult):  # input requests: we cannot answer
            raise ToolFailed(f"The MCP tool '{remote}' asked for input an agent cannot give.")
        return result

    result: types.CallToolResult = _run(connection, body)
    text = _as_text(result)
    if result.is_error:
        raise ToolFailed(f"The MCP tool '{remote}' reported an error: {text}")
    return text
