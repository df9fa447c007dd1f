"""The A2A endpoints, mounted by config/asgi.py at /a2a/ beside Django (decision 116).

The official SDK does the wire: `JsonRpcDispatcher` parses JSON-RPC (spec 1.0, and 0.3's
`message/send` and `message/stream` through its compatibility adapter), streams SSE and
shapes errors. `RunRequestHandler` maps the methods onto agent runs: a task is a run (its id
is the run's id) and a context is a conversation of runs (decision 125), `SendMessage` starts
one through agents.services.agent_run_start and waits for it, `SendStreamingMessage` relays
its state changes and its answer as the worker writes it (agents/runs/live.py), `GetTask`
reads it, `CancelTask` cancels it. Authentication happens before the dispatcher, so a wrong
key, a key of another workspace and an agent that is not exposed are plain HTTP 401, 404 and
404."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

from a2a.server.context import ServerCallContext
from a2a.server.events import Event
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes.common import ServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.types import (
    AgentCard,
    Artifact,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import (
    A2AError,
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.http.request import split_domain_port, validate_host
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from a2a_server import cards, selectors, services
from a2a_server.selectors import Target, Unauthenticated
from agents.models import AgentRun
from agents.runs import live
from core.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied
from tenants.api.throttling import AuthFailureThrottle, asgi_client

T = TypeVar("T")
logger = logging.getLogger(__name__)

# A waiting call reads the run again this often even when the worker says nothing (a lost
# message, a worker that died): the database is the truth, the channel layer only wakes it.
RECHECK_SECONDS = 2.0
# SendMessage waits this long for the answer, then returns the task still working (the
# client reads it later with GetTask): a slow model must not hold a connection forever.
WAIT_SECONDS = 120.0
TARGET_STATE = "a2a.target"

_STATES = {
    AgentRun.Status.QUEUED: TaskState.TASK_STATE_SUBMITTED,
    AgentRun.Status.RUNNING: TaskState.TASK_STATE_WORKING,
    AgentRun.Status.SUCCEEDED: TaskState.TASK_STATE_COMPLETED,
    AgentRun.Status.FAILED: TaskState.TASK_STATE_FAILED,
    AgentRun.Status.CANCELED: TaskState.TASK_STATE_CANCELED,
}
_FINISHED = {AgentRun.Status.SUCCEEDED, AgentRun.Status.FAILED, AgentRun.Status.CANCELED}


async def _db(fn: Callable[..., T], /, **kwargs: Any) -> T:
    """Run `fn` on a thread of the executor, with a connection of that thread opened and given
    back (to the pool under `manage.py serve`) as a Django request does. Not the one shared
    thread of `thread_sensitive`: waiting streams poll, and must not queue behind each other."""

    def call() -> T:
        close_old_connections()  # as Django does when a request starts and finishes
        try:
            return fn(**kwargs)
        finally:
            close_old_connections()

    return await sync_to_async(call, thread_sensitive=False)()


def _context_id(run: AgentRun) -> str:
    """The contextId issued with the run's conversation; `run-<id>` for a run of none (runs
    started before contexts existed, or whose context was deleted)."""
    conversation = run.conversation if run.conversation_id is not None else None
    if conversation is not None and conversation.context_id:
        return conversation.context_id
    return f"run-{run.pk}"


def _text_message(run: AgentRun, text: str, role: int) -> Message:
    return Message(
        message_id=f"run-{run.pk}-{'agent' if role == Role.ROLE_AGENT else 'user'}",
        context_id=_context_id(run),
        task_id=str(run.pk),
        role=role,  # type: ignore[arg-type]
        parts=[Part(text=text)],
    )


def _status(run: AgentRun) -> TaskStatus:
    status = TaskStatus(state=_STATES[AgentRun.Status(run.status)])
    if run.status == AgentRun.Status.SUCCEEDED:
        status.message.CopyFrom(_text_message(run, run.output, Role.ROLE_AGENT))
    elif run.error:
        status.message.CopyFrom(_text_message(run, run.error, Role.ROLE_AGENT))
    return status


def _answer(run: AgentRun, text: str | None = None) -> Artifact:
    return Artifact(
        artifact_id=f"run-{run.pk}-answer",
        name="answer",
        parts=[Part(text=run.output if text is None else text)],
    )


def _task(run: AgentRun) -> Task:
    task = Task(
        id=str(run.pk),
        context_id=_context_id(run),
        status=_status(run),
        history=[_text_message(run, run.input, Role.ROLE_USER)],
    )
    if run.status == AgentRun.Status.SUCCEEDED:
        task.artifacts.append(_answer(run))
    return task


def _target(context: ServerCallContext) -> Target:
    target = context.state.get(TARGET_STATE)
    if not isinstance(target, Target):  # the endpoints always set it: a wiring mistake
        raise UnsupportedOperationError(message="No agent for this call.")
    return target


def _run_id(task_id: str) -> int:
    if not task_id.isdigit():
        raise TaskNotFoundError(message=f"No task {task_id!r}.")
    return int(task_id)


def _input_text(params: SendMessageRequest) -> str:
    message = params.message
    if message.task_id:
        raise UnsupportedOperationError(
            message="Each message starts a new task; continuing a task is not supported "
            "(continue its context: send contextId)."
        )
    texts = [part.text for part in message.parts if part.WhichOneof("content") == "text"]
    if not texts:
        raise InvalidParamsError(message="message.parts: send at least one text part.")
    return "\n".join(texts)


def _a2a_error(exc: ApplicationError) -> A2AError:
    # The message names the field and the problem (e.g. the input is too long, the monthly
    # run allowance is used up); the JSON-RPC error carries it.
    return InvalidParamsError(message=exc.message, data={"code": exc.code, "fields": exc.fields})


class RunRequestHandler(RequestHandler):
    """A2A methods as agent runs of the agent the endpoint resolved (context state)."""

    async def _start(self, params: SendMessageRequest, context: ServerCallContext) -> AgentRun:
        text = _input_text(params)
        try:
            return await _db(
                services.a2a_run_start,
                target=_target(context),
                text=text,
                context_id=params.message.context_id,
            )
        except ApplicationError as exc:
            raise _a2a_error(exc) from exc

    async def _follow(self, target: Target, run: AgentRun) -> AsyncGenerator[AgentRun | str, None]:
        """The run as it changes (read again from the database whenever the worker says
        something, and every RECHECK_SECONDS) and, for a run of a context, its answer's
        pieces as the worker writes them (str), until it has finished. Joins the run's group
        before reading the run and its buffer, so no piece falls in between; pieces already
        in the buffer are dropped when they arrive again."""
        schema = target.access.workspace.schema_name
        async with _Inbox(live.run_group(schema, run)) as inbox:
            run = await self._read(target, run.pk)
            yield run
            seen = 0
            if inbox.open and run.status not in _FINISHED and run.conversation_id is not None:
                pieces = await _db(live.buffered, schema_name=schema, run=run)
                seen = len(pieces)
                if pieces:
                    yield "".join(pieces)
            while run.status not in _FINISHED:
                message = await inbox.next()
                if message is not None and message.get("type") == live.DELTA:
                    if int(message["seq"]) > seen:
                        seen = int(message["seq"])
                        yield str(message["text"])
                    continue
                run = await self._read(target, run.pk)
                yield run

    async def _read(self, target: Target, run_id: int) -> AgentRun:
        run = await _db(selectors.run_of, target=target, run_id=run_id)
        if run is None:
            raise TaskNotFoundError(message=f"No task {run_id} for this agent.")
        return run

    async def on_message_send(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> Task | Message:
        run = await self._start(params, context)
        if params.configuration.return_immediately:
            return _task(run)
        try:
            async with (
                asyncio.timeout(WAIT_SECONDS),
                contextlib.aclosing(self._follow(_target(context), run)) as follow,
            ):
                async for item in follow:
                    if isinstance(item, AgentRun):
                        run = item
        except TimeoutError:
            pass  # the task is returned still working; GetTask reads it later
        return _task(run)

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        run = await self._start(params, context)
        yield _task(run)
        task_id, context_id = str(run.pk), _context_id(run)
        seen, streamed = run.status, ""
        async with contextlib.aclosing(self._follow(_target(context), run)) as follow:
            async for item in follow:
                if isinstance(item, str):  # a piece of the answer, as the worker writes it
                    yield TaskArtifactUpdateEvent(
                        task_id=task_id,
                        context_id=context_id,
                        artifact=_answer(run, item),
                        append=bool(streamed),
                        last_chunk=False,
                    )
                    streamed += item
                    continue
                run = item
                if run.status != seen and run.status not in _FINISHED:
                    seen = run.status
                    yield TaskStatusUpdateEvent(
                        task_id=task_id, context_id=context_id, status=_status(run)
                    )
        if run.status == AgentRun.Status.SUCCEEDED:
            # The saved answer is the truth: when the pieces add up to it, the last chunk
            # closes the artifact; otherwise (a repair round, a guardrail, a lost piece) the
            # whole answer replaces what was streamed.
            same = bool(streamed) and streamed == run.output
            yield TaskArtifactUpdateEvent(
                task_id=task_id,
                context_id=context_id,
                artifact=_answer(run, "" if same else None),
                append=same,
                last_chunk=True,
            )
        yield TaskStatusUpdateEvent(task_id=task_id, context_id=context_id, status=_status(run))

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task | None:
        return _task(await self._read(_target(context), _run_id(params.id)))

    async def on_cancel_task(
        self, params: CancelTaskRequest, context: ServerCallContext
    ) -> Task | None:
        try:
            run = await _db(
                services.a2a_run_cancel, target=_target(context), run_id=_run_id(params.id)
            )
        except NotFound as exc:
            raise TaskNotFoundError(message=exc.message) from exc
        except Conflict as exc:
            raise TaskNotCancelableError(message=exc.message) from exc
        except ApplicationError as exc:
            raise _a2a_error(exc) from exc
        return _task(run)

    async def on_list_tasks(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        raise UnsupportedOperationError(message="Listing tasks is not supported: use GetTask.")

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        raise UnsupportedOperationError(message="Resubscribing is not supported: use GetTask.")
        yield  # pragma: no cover  (makes this an async generator)

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError()

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError()

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError()

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        raise PushNotificationNotSupportedError()

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        raise UnsupportedOperationError(message="There is no extended agent card.")


class _Inbox:
    """The messages of one run's channel-layer group, for as long as the `async with` lasts.
    One task receives them into a queue (a channel layer's receive is never cancelled half
    way, which could drop a message); `next` waits at most RECHECK_SECONDS. When the layer is
    down the inbox stays empty and the caller reads the run on that timer instead."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.layer = live.layer()
        self.channel = ""
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.pump: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return bool(self.channel)

    async def __aenter__(self) -> _Inbox:
        try:
            channel = await self.layer.new_channel()
            await self.layer.group_add(self.group, channel)
        except Exception:
            logger.warning("a2a: %s is followed without its live pieces", self.group, exc_info=True)
            return self
        self.channel = channel
        self.pump = asyncio.create_task(self._pump())
        return self

    async def _pump(self) -> None:
        try:
            while True:
                self.queue.put_nowait(await self.layer.receive(self.channel))
        except asyncio.CancelledError:
            raise
        except Exception:  # the layer went away: the caller reads the run on a timer
            logger.warning("a2a: stopped receiving on %s", self.group, exc_info=True)

    async def next(self) -> dict[str, Any] | None:
        """The next message, or None after RECHECK_SECONDS."""
        try:
            async with asyncio.timeout(RECHECK_SECONDS):
                return await self.queue.get()
        except TimeoutError:
            return None

    async def __aexit__(self, *exc: object) -> None:
        if self.pump is not None:
            self.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pump
        if self.channel:
            try:
                await self.layer.group_discard(self.group, self.channel)
            except Exception:
                logger.warning("a2a: could not leave %s", self.group, exc_info=True)


class TargetContextBuilder(ServerCallContextBuilder):
    """Hands the agent the endpoint resolved to the handler."""

    def build(self, request: Request) -> ServerCallContext:
        return ServerCallContext(
            # The SDK reads the A2A-Version header from here.
            state={TARGET_STATE: request.scope.get(TARGET_STATE), "headers": dict(request.headers)}
        )


def _refusal(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="a2a"'} if status == 401 else None
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


async def _resolve(request: Request) -> Target | JSONResponse:
    if not _host_allowed(request):
        return _refusal(400, "bad_host", "This host is not served here.")
    # Failed keys count against the caller's address with the REST API's and MCP's.
    client = asgi_client(request.scope)
    wait = await _db(AuthFailureThrottle().wait_if_blocked, request=client)
    if wait is not None:
        refusal = _refusal(
            429, "throttled", f"Too many failed API-key attempts; try again in {wait:.0f} s."
        )
        refusal.headers["Retry-After"] = str(max(1, round(wait)))
        return refusal
    secret = selectors.bearer_secret(
        request.headers.get("authorization", ""), request.headers.get("x-api-key", "")
    )
    try:
        if "listing" in request.path_params:
            return await _db(
                selectors.installed_listing_agent,
                secret=secret,
                listing_slug=str(request.path_params["listing"]),
            )
        return await _db(
            selectors.exposed_agent,
            secret=secret,
            workspace_slug=str(request.path_params["slug"]),
            agent_id=int(request.path_params["agent_id"]),
        )
    except Unauthenticated as exc:
        if secret:  # a key that failed; no key at all is not a guess
            await _db(AuthFailureThrottle().record_failure, request=client)
        return _refusal(401, "not_authenticated", str(exc))
    except PermissionDenied as exc:
        return _refusal(403, exc.code, exc.message)
    except NotFound as exc:
        return _refusal(404, exc.code, exc.message)


def _base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _host_allowed(request: Request) -> bool:
    """Django's ALLOWED_HOSTS check, which Django's handler does for its own requests: cards
    carry absolute URLs built from the Host header, and listing cards may be cached."""
    domain, _port = split_domain_port(request.headers.get("host", ""))
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


async def agent_card_endpoint(request: Request) -> Response:
    target = await _resolve(request)
    if isinstance(target, JSONResponse):
        return target
    card = cards.agent_card(target, base_url=_base_url(request))
    return JSONResponse(agent_card_to_dict(card), headers={"Cache-Control": "private, no-store"})


async def listing_card_endpoint(request: Request) -> Response:
    """Public, like the listing's marketplace page (decision 117)."""
    if not _host_allowed(request):
        return _refusal(400, "bad_host", "This host is not served here.")
    try:
        listing = await _db(
            selectors.public_agent_listing, slug=str(request.path_params["listing"])
        )
    except NotFound as exc:
        return _refusal(404, exc.code, exc.message)
    card = cards.listing_card(listing, base_url=_base_url(request))
    return JSONResponse(agent_card_to_dict(card), headers={"Cache-Control": "public, max-age=300"})


def build_app() -> Starlette:
    dispatcher = JsonRpcDispatcher(
        request_handler=RunRequestHandler(),
        context_builder=TargetContextBuilder(),
        enable_v0_3_compat=True,
    )

    async def rpc_endpoint(request: Request) -> Response:
        target = await _resolve(request)
        if isinstance(target, JSONResponse):
            return target
        request.scope[TARGET_STATE] = target
        return await dispatcher.handle_requests(request)

    card = ".well-known/agent-card.json"
    agent = "/a2a/w/{slug}/agents/{agent_id:int}/"
    listing = "/a2a/listings/{listing}/"
    return Starlette(
        routes=[
            Route(agent + card, agent_card_endpoint, methods=["GET"]),
            Route(agent, rpc_endpoint, methods=["POST"]),
            Route(listing + card, listing_card_endpoint, methods=["GET"]),
            Route(listing, rpc_endpoint, methods=["POST"]),
        ]
    )
