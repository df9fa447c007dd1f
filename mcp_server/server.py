"""The per-workspace MCP endpoint: `/mcp/w/<workspace slug>/`, Streamable HTTP.

A plain ASGI app in front of Django's (config/asgi.py): it authenticates the API key, then
serves the request with the official SDK's stateless Streamable HTTP session manager around a
low-level `Server` built for that workspace (its tools are the workspace's exposed agents and
published workflows).
Stateless + JSON responses: every POST is self-contained, so it works the same under daphne and
uvicorn workers, behind any load balancer, with no lifespan hook (decision 114).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

import anyio
import mcp_types as types
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection
from django.http.request import split_domain_port, validate_host
from django.urls import reverse
from django_tenants.utils import schema_context
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from agents.models import AgentRun
from agents.services import agent_run_start
from core.exceptions import ApplicationError, NotFound, PermissionDenied
from mcp_server import selectors
from tenants.api.throttling import AuthFailureThrottle, asgi_client
from tenants.permissions import Access, Perm
from tenants.selectors import access_for_api_key
from tenants.services import api_key_authenticate
from workflows.models import RUN_FINISHED, RunStatus, WorkflowRun
from workflows.triggers import api_run_start

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

PREFIX = "/mcp/w/"
PATH = re.compile(r"^/mcp/w/(?P<slug>[a-z0-9-]{1,63})/?$")
# The run is polled from its row: soon at first (offline and cached answers take milliseconds),
# then less often, so a long run costs a query every half second at most.
POLL_FIRST, POLL_GROWTH, POLL_MOST = 0.01, 1.5, 0.5
FINISHED = {AgentRun.Status.SUCCEEDED, AgentRun.Status.FAILED}
# A workflow run waiting for a person (an approval, a webhook) is not waited for: it may be days.
WORKFLOW_SETTLED = {*RUN_FINISHED, RunStatus.WAITING}


class Unauthenticated(ApplicationError):
    code = "unauthenticated"
    status = 401


def _secret(scope: Scope) -> str:
    headers: dict[str, str] = {
        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
    }
    auth = headers.get("authorization", "")
    if auth:
        parts = auth.split()
        if len(parts) == 2 and parts[0].lower() == "bearer":
            return parts[1]
        raise Unauthenticated("Malformed Authorization header: use 'Bearer <api key>'.")
    secret = headers.get("x-api-key", "")
    if not secret:
        raise Unauthenticated("An API key is required: 'Authorization: Bearer <api key>'.")
    return secret


class Throttled(ApplicationError):
    code = "throttled"
    status = 429

    def __init__(self, wait: float) -> None:
        super().__init__(f"Too many failed API-key attempts; try again in {wait:.0f} s.")
        self.retry_after = max(1, round(wait))


def _access(*, scope: Scope, slug: str) -> Access:
    """The key's access, if it is a live key of the workspace in the path with the run scope.
    Failed keys count against the caller's address as on the REST API (AuthFailureThrottle)."""
    close_old_connections()
    cast(Any, connection).set_schema_to_public()  # the key and its workspace are public rows
    failures, client = AuthFailureThrottle(), asgi_client(scope)
    wait = failures.wait_if_blocked(client)
    if wait is not None:
        raise Throttled(wait)
    try:
        key = api_key_authenticate(secret=_secret(scope))
    except (NotFound, Unauthenticated) as exc:
        failures.record_failure(client)
        raise Unauthenticated(exc.message) from exc
    if key.workspace.slug != slug:
        # Not "another workspace's key": the endpoint of a workspace it cannot see is not found.
        raise NotFound("No MCP endpoint for this API key at this address.")
    access = access_for_api_key(api_key=key)
    if not access.can(Perm.RUN):
        raise PermissionDenied(
            f"This API key lacks the '{Perm.RUN.value}' scope that MCP tool calls need."
        )
    return access


def _text_result(text: str, *, error: bool = False, structured: Any = None) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=structured, is_error=error
    )


def _refusal(exc: ApplicationError) -> types.CallToolResult:
    """A refused start as a tool error: the service's message, plus any field's message it
    does not already contain (the inputs check words every problem in both)."""
    extra = [
        f"{field}: {text}"
        for field, texts in exc.fields.items()
        for text in texts
        if text not in exc.message
    ]
    return _text_result(" ".join([exc.message, *extra]), error=True)


@dataclass(frozen=True)
class _Started:
    """A run a tool call started: its id, and where the REST API follows it."""

    run_id: int
    follow: str
    workflow: bool = False


class _Tools:
    """The tools of `access`'s workspace: its exposed agents and published workflows. Reads and
    writes are synchronous (Django's ORM), in the workspace's schema; the waits are async."""

    def __init__(self, access: Access) -> None:
        self.access = access
        self.schema = access.workspace.schema_name

    def list(self) -> list[types.Tool]:
        with schema_context(self.schema):
            agents = [
                types.Tool(
                    name=selectors.tool_name(agent),
                    title=agent.name,
                    description=agent.description or f"Run the agent “{agent.name}”.",
                    input_schema=selectors.INPUT_SCHEMA,
                )
                for agent in selectors.exposed_agents(access=self.access)
            ]
            workflows = [
                types.Tool(
                    name=selectors.workflow_tool_name(workflow),
                    title=workflow.name,
                    description=workflow.description or f"Run the workflow “{workflow.name}”.",
                    input_schema=selectors.workflow_input_schema(workflow),
                )
                for workflow in selectors.exposed_workflows(access=self.access)
            ]
            return agents + workflows

    def start(self, name: str, arguments: dict[str, Any]) -> _Started:
        with schema_context(self.schema):
            if name.startswith("workflow_"):
                return self._start_workflow(name, arguments)
            agent = selectors.exposed_agent_for_tool(access=self.access, name=name)
            if agent is None:
                raise NotFound(f"No tool named '{name}' in this workspace.")
            text = arguments.get("input")
            if not isinstance(text, str):
                raise ApplicationError("Argument 'input': required, a string.")
            run_id = agent_run_start(access=self.access, agent_id=agent.pk, input=text).pk
            return _Started(run_id, f"/api/v1/agents/{agent.pk}/runs/{run_id}/")

    def _start_workflow(self, name: str, arguments: dict[str, Any]) -> _Started:
        workflow = selectors.exposed_workflow_for_tool(access=self.access, name=name)
        if workflow is None:
            raise NotFound(f"No tool named '{name}' in this workspace.")
        # As POST /api/v1/workflows/{id}/runs/: the inputs checked, quotas, the key's prefix.
        run = api_run_start(access=self.access, workflow=workflow, inputs=arguments)
        follow = reverse("api-workflow-run", kwargs={"run_id": run.pk})
        return _Started(run.pk, follow, workflow=True)

    def agent_run(self, run_id: int) -> AgentRun:
        with schema_context(self.schema):
            return selectors.run_outcome(run_id=run_id)

    def workflow_run(self, run_id: int) -> WorkflowRun:
        with schema_context(self.schema):
            return selectors.workflow_run_outcome(run_id=run_id)

    def waiting(self, started: _Started) -> types.CallToolResult:
        """A run waiting for a person: not an error; where to decide and to follow it."""
        with schema_context(self.schema):
            step = selectors.workflow_run_waiting_step(run_id=started.run_id)
        page = settings.SITE_URL.rstrip("/") + reverse(
            "workflow_run_detail",
            kwargs={"workspace_slug": self.access.workspace.slug, "run_id": started.run_id},
        )
        webhook = step is not None and step.node_type == "webhook_wait"
        at = f" at step “{step.node_id}”" if step is not None else ""
        return _text_result(
            f"Run {started.run_id} waits for {'a webhook' if webhook else 'approval'}{at}: "
            f"see it at {page}. It goes on from there: follow it with GET {started.follow}."
        )

    async def call(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        try:
            started = await sync_to_async(self.start)(name, arguments)
        except ApplicationError as exc:
            return _refusal(exc)
        if started.workflow:
            return await self._workflow_result(started)
        run: AgentRun = await _wait(started, self.agent_run, lambda r: r.status in FINISHED)
        if run.status == AgentRun.Status.SUCCEEDED:
            return _text_result(run.output)
        if run.status == AgentRun.Status.FAILED:
            return _text_result(
                f"Run {started.run_id} failed: {run.error or 'no detail'}", error=True
            )
        return _still_going(started, run.status)

    async def _workflow_result(self, started: _Started) -> types.CallToolResult:
        run: WorkflowRun = await _wait(
            started, self.workflow_run, lambda r: r.status in WORKFLOW_SETTLED
        )
        if run.status == RunStatus.SUCCEEDED:
            # A JSON object is also structured content (the only kind every protocol version
            # takes); any other output is the text alone.
            structured = run.output if isinstance(run.output, dict) else None
            return _text_result(_json(run.output), structured=structured)
        if run.status == RunStatus.WAITING:
            return await sync_to_async(self.waiting)(started)
        if run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            detail = run.error or "no detail"
            return _text_result(f"Run {started.run_id} {run.status}: {detail}", error=True)
        return _still_going(started, run.status)


async def _wait(started: _Started, read: Callable[[int], Any], done: Callable[[Any], bool]) -> Any:
    """The run, polled from its row until `done(run)` or MCP_TOOL_TIMEOUT_SECONDS passed."""
    pause = POLL_FIRST
    run = await sync_to_async(read)(started.run_id)
    with anyio.move_on_after(float(settings.MCP_TOOL_TIMEOUT_SECONDS)):
        while not done(run):
            await anyio.sleep(pause)
            pause = min(pause * POLL_GROWTH, POLL_MOST)
            run = await sync_to_async(read)(started.run_id)
    return run


def _still_going(started: _Started, status: str) -> types.CallToolResult:
    timeout = float(settings.MCP_TOOL_TIMEOUT_SECONDS)
    return _text_result(
        f"Run {started.run_id} is still {status} after {timeout:g} s; it goes on: follow it "
        f"with GET {started.follow}.",
        error=True,
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def build_server(access: Access) -> Server[Any]:
    """An MCP server whose tools are `access`'s workspace's exposed agents and workflows."""
    tools = _Tools(access)

    async def on_list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=await sync_to_async(tools.list)())

    async def on_call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        return await tools.call(params.name, params.arguments or {})

    return Server(
        "agent-market",
        version="1",
        title=f"Agent Market: {access.workspace.name}",
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
    )


def _host_allowed(scope: Scope) -> bool:
    host = next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"host"), "")
    domain, _ = split_domain_port(host)
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


async def _refuse(send: Send, status: int, message: str, *, retry_after: int = 0) -> None:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": message}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="mcp"'))
    if retry_after:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def mcp_app(scope: Scope, receive: Receive, send: Send) -> None:
    match = PATH.match(scope["path"])
    if match is None:
        await _refuse(send, 404, "Not an MCP endpoint: use /mcp/w/<workspace>/.")
        return
    if not _host_allowed(scope):  # as Django checks every other request (ALLOWED_HOSTS)
        await _refuse(send, 400, "Invalid Host header.")
        return
    try:
        access = await sync_to_async(_access)(scope=scope, slug=match["slug"])
    except ApplicationError as exc:
        wait = exc.retry_after if isinstance(exc, Throttled) else 0
        await _refuse(send, exc.status, exc.message, retry_after=wait)
        return
    manager = StreamableHTTPSessionManager(
        app=build_server(access), stateless=True, json_response=True
    )
    try:
        async with manager.run():
            await manager.handle_request(scope, receive, send)
    finally:  # as Django's handler does at request_finished (CONN_MAX_AGE applies)
        await sync_to_async(close_old_connections)()


def with_mcp(django_app: ASGIApp) -> ASGIApp:
    """`django_app` with `/mcp/w/…` answered by the MCP endpoint."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await mcp_app(scope, receive, send)
        else:
            await django_app(scope, receive, send)

    return app
