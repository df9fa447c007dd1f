"""A scripted loopback HTTP server: the machinery shared by the fake APIs in this package.

A `FakeServer` listens on 127.0.0.1 at an ephemeral port (stdlib `ThreadingHTTPServer` in a
daemon thread), records every request it receives, and answers each one with the next
scripted item queued for that endpoint (or the subclass' default answer). Subclasses
(`FakeAnthropic`, `FakeOpenAI`) only turn scripted items into their API's wire format.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

# ---------------------------------------------------------------------------------------------
# What tests script
# ---------------------------------------------------------------------------------------------

# A tool call the fake model makes: (name, arguments) or (name, arguments, id). `arguments`
# as a dict is sent as the API would; as a str it is sent verbatim (to script malformed JSON).
ToolCallSpec = tuple[str, Mapping[str, Any] | str] | tuple[str, Mapping[str, Any] | str, str]


@dataclass(frozen=True)
class Reply:
    """A successful model answer (text and/or tool calls)."""

    text: str | None = None
    tool_calls: tuple[ToolCallSpec, ...] = ()
    usage: Mapping[str, int] | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None
    model: str | None = None
    chunk_size: int | None = None
    chunk_delay: float = 0.0
    delay: float = 0.0
    endpoint: str | None = None


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error in the API's error envelope."""

    status: int
    retry_after: float | None = None
    message: str | None = None
    error_type: str | None = None
    code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    endpoint: str | None = None


@dataclass(frozen=True)
class Malformed:
    """200 with `content-type: application/json` and a body that is not JSON (for a streaming
    request: a well-formed start, then an event whose data is not JSON)."""

    body: bytes = b'{"id": "broken", "content": [{"type": "text", "text": "Hel'
    delay: float = 0.0
    endpoint: str | None = None


@dataclass(frozen=True)
class StreamError:
    """A stream that starts fine (200, some text deltas) and then reports an error inside
    the stream, or (`cut`) simply ends there, the connection closed with no error and no
    final event. Answered to a non-streaming request as the corresponding HTTP error.
    `usage`: the counts the stream's start reports (Anthropic's `message_start`)."""

    text: str = ""
    error_type: str | None = None
    message: str | None = None
    usage: Mapping[str, int] | None = None
    cut: bool = False
    delay: float = 0.0
    endpoint: str | None = None


Scripted = Reply | ErrorReply | Malformed | StreamError


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it. Header names are lower-case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw: bytes
    endpoint: str | None
    api_key: str | None = None
    """The credential the request carried (from whichever header the API accepts)."""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


# ---------------------------------------------------------------------------------------------
# Writing responses
# ---------------------------------------------------------------------------------------------


class Exchange:
    """One request/response on the wire. Writes after the client went away are dropped, so
    a client that timed out never makes the server thread raise."""

    def __init__(self, handler: BaseHTTPRequestHandler, fake: FakeServer) -> None:
        self._handler = handler
        self._fake = fake
        self.client_gone = False
        self._chunked = False

    def _write(self, data: bytes) -> None:
        if self.client_gone:
            return
        try:
            self._handler.wfile.write(data)
            self._handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            self.client_gone = True

    def _headers(self, status: int, headers: Mapping[str, str]) -> None:
        if self.client_gone:
            return
        try:
            self._handler.send_response(status)
            for name, value in headers.items():
                self._handler.send_header(name, value)
            self._handler.end_headers()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            self.client_gone = True

    def send_bytes(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        all_headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        all_headers.update(headers or {})
        self._headers(status, all_headers)
        self._write(body)

    def send_json(
        self, status: int, payload: Any, *, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), headers=headers)

    def start_stream(self, *, headers: Mapping[str, str] | None = None) -> None:
        all_headers = {
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
        }
        all_headers.update(headers or {})
        self._headers(200, all_headers)
        self._chunked = True

    def stream(self, data: bytes, *, pause: float = 0.0) -> None:
        """One chunk of a chunked body, optionally after `pause` seconds."""
        if pause > 0:
            self._fake.sleep(pause)
        if data:
            self._write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self) -> None:
        if self._chunked:
            self._write(b"0\r\n\r\n")
            self._chunked = False


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeAPI/1.0"
    sys_version = ""
    timeout = 30  # an idle keep-alive connection is dropped after this many seconds
    # Real API servers send small responses at once; with Nagle on, headers and body written
    # separately wait for the client's delayed ACK (~40 ms), which would swamp any timing.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.fake.track_connection(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.fake.track_connection(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server.fake.dispatch(self, raw)

    do_POST = _serve
    do_GET = _serve
    do_PUT = _serve
    do_PATCH = _serve
    do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # FakeServer.stop() closes connections and joins threads itself
    allow_reuse_address = True

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", fake.bind_port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            return  # a client that went away (reset, timeout, stop()): not a failure
        if error is not None:
            self.fake.server_errors.append(error)
        super().handle_error(request, client_address)


class FakeServer:
    """Base of the fake APIs. Use as a context manager (`with FakeX() as fake:`) or call
    `start()` / `stop()`. Subclasses set `routes` and implement `respond`, `key_of` and
    `send_error`."""

    # path (without query) -> endpoint name
    routes: ClassVar[dict[str, str]] = {}
    # the endpoint that `queue()` scripts by default
    chat_endpoint: ClassVar[str] = ""
    # the prefix of `base_url` after host:port, e.g. "/v1"
    base_path: ClassVar[str] = ""
    # the port to listen on; 0 (tests): any free one. A long-lived emulator keeps its port
    # across restarts (tests/fakes/stripe_serve.py).
    bind_port: int = 0

    def __init__(self, *, api_key: str | None = None, strict: bool = True) -> None:
        """`api_key`: when set, requests carrying another key get a 401 (when None, any
        non-empty key is accepted; a missing one is still a 401). `strict`: answer 400 to
        requests the real API would reject (see the subclass for what is checked)."""
        self.api_key = api_key
        self.strict = strict
        self.requests: list[RecordedRequest] = []
        # exceptions raised inside the fake while answering (a bug in the fake, not the SDK)
        self.server_errors: list[BaseException] = []
        self._script: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: wake handlers sleeping on a scripted delay, close every open
        connection, and wait (up to a few seconds) for all server threads to end."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            connections = dict(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        for handler_thread in connections.values():
            handler_thread.join(timeout=5)
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running; use start() or `with`.")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT (no path)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What to give the SDK client as `base_url`."""
        return self.url + self.base_path

    # -- scripting ------------------------------------------------------------------------

    def queue(
        self,
        text: str | None = None,
        *,
        tool_calls: Iterable[ToolCallSpec] = (),
        usage: Mapping[str, int] | None = None,
        stop_reason: str | None = None,
        stop_sequence: str | None = None,
        model: str | None = None,
        chunk_size: int | None = None,
        chunk_delay: float = 0.0,
        delay: float = 0.0,
        endpoint: str | None = None,
    ) -> None:
        """Script the next chat answer (the next request to the chat endpoint, see
        `endpoint`). `usage` is in the API's own wire shape (see the subclass).
        `stop_reason` is the API's own value; by default the "tool" one when there are tool
        calls, else the "natural end" one. `model` defaults to the requested model.
        Streaming: text is sent `chunk_size` characters per delta (default: word by word),
        `chunk_delay` seconds apart. `delay`: seconds to wait before answering."""
        self._push(
            Reply(
                text=text,
                tool_calls=tuple(tool_calls),
                usage=dict(usage) if usage is not None else None,
                stop_reason=stop_reason,
                stop_sequence=stop_sequence,
                model=model,
                chunk_size=chunk_size,
                chunk_delay=chunk_delay,
                delay=delay,
                endpoint=endpoint or self.chat_endpoint,
            )
        )

    def queue_delay(self, seconds: float, text: str | None = None, **reply: Any) -> None:
        """Script an answer that comes only after `seconds` (to trigger client timeouts).
        Takes the same keyword arguments as `queue`. The sleep is cut short by `stop()`."""
        self.queue(text, delay=seconds, **reply)

    def queue_error(
        self,
        status: int,
        *,
        retry_after: float | None = None,
        message: str | None = None,
        error_type: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        endpoint: str | None = None,
    ) -> None:
        """Script an HTTP error in the API's error envelope for the next request to
        `endpoint` (default: any endpoint). `retry_after` sets the `retry-after` header;
        `error_type` / `message` / `code` default to what the real API sends for `status`."""
        self._push(
            ErrorReply(
                status=status,
                retry_after=retry_after,
                message=message,
                error_type=error_type,
                code=code,
                headers=dict(headers or {}),
                delay=delay,
                endpoint=endpoint,
            )
        )

    def queue_malformed(
        self, *, body: bytes | None = None, delay: float = 0.0, endpoint: str | None = None
    ) -> None:
        """Script a 200 `application/json` answer whose body is not valid JSON. A streaming
        request gets a valid first event and then an event whose data is not JSON."""
        kwargs: dict[str, Any] = {"delay": delay, "endpoint": endpoint}
        if body is not None:
            kwargs["body"] = body
        self._push(Malformed(**kwargs))

    def queue_stream_error(
        self,
        text: str = "",
        *,
        error_type: str | None = None,
        message: str | None = None,
        usage: Mapping[str, int] | None = None,
        endpoint: str | None = None,
    ) -> None:
        """Script a stream that sends `text` as deltas and then an in-stream error event
        (the way the real APIs report failures after the 200 went out)."""
        self._push(
            StreamError(
                text=text,
                error_type=error_type,
                message=message,
                usage=usage,
                endpoint=endpoint or self.chat_endpoint,
            )
        )

    def queue_stream_cut(
        self,
        text: str = "",
        *,
        usage: Mapping[str, int] | None = None,
        endpoint: str | None = None,
    ) -> None:
        """Script a stream that sends `text` as deltas and then stops: the connection closes
        with no error event, no stop reason and no final usage (a proxy or server that died
        mid-answer)."""
        self._push(
            StreamError(text=text, usage=usage, cut=True, endpoint=endpoint or self.chat_endpoint)
        )

    @property
    def pending(self) -> int:
        """How many scripted answers have not been used yet."""
        with self._lock:
            return len(self._script)

    def reset(self) -> None:
        """Forget scripted answers and recorded requests."""
        with self._lock:
            self._script.clear()
            self.requests.clear()

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self.requests:
                raise AssertionError(f"{type(self).__name__} received no request")
            return self.requests[-1]

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    # -- for subclasses -------------------------------------------------------------------

    def respond(
        self, endpoint: str, request: RecordedRequest, item: Scripted | None, out: Exchange
    ) -> None:
        raise NotImplementedError

    def key_of(self, headers: Mapping[str, str]) -> str | None:
        """The API key in these (lower-cased) request headers, if any."""
        raise NotImplementedError

    def auth_error(self, request: RecordedRequest) -> str | None:
        """A message when the request is not authenticated, else None."""
        if not request.api_key:
            return "No API key: the request carried no credential header."
        if self.api_key is not None and request.api_key != self.api_key:
            return "Invalid API key."
        return None

    def send_error(
        self,
        out: Exchange,
        status: int,
        *,
        message: str | None = None,
        error_type: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        raise NotImplementedError

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when the server stops."""
        self._stopping.wait(seconds)

    def next_id(self) -> int:
        return next(self._ids)

    # -- internals ------------------------------------------------------------------------

    def _push(self, item: Scripted) -> None:
        with self._lock:
            self._script.append(item)

    def _pop(self, endpoint: str) -> Scripted | None:
        with self._lock:
            for index, item in enumerate(self._script):
                if item.endpoint is None or item.endpoint == endpoint:
                    del self._script[index]
                    return item
        return None

    # -- called by the server's handler threads -------------------------------------------

    def track_connection(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections[conn] = threading.current_thread()
            else:
                self._connections.pop(conn, None)

    def dispatch(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        split = urlsplit(handler.path)
        endpoint = self.routes.get(split.path)
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        headers = {name.lower(): value for name, value in handler.headers.items()}
        request = RecordedRequest(
            method=handler.command,
            path=split.path,
            query=parse_qs(split.query),
            headers=headers,
            body=body,
            raw=raw,
            endpoint=endpoint,
            api_key=self.key_of(headers),
        )
        with self._lock:
            self.requests.append(request)
        out = Exchange(handler, self)

        if endpoint is None or handler.command != "POST":
            self.send_error(out, 404, message=f"Not found: {handler.command} {split.path}")
            return
        problem = self.auth_error(request)
        if problem is not None:
            self.send_error(out, 401, message=problem)
            return
        if raw and body is None:
            self.send_error(out, 400, message="The request body is not valid JSON.")
            return
        item = self._pop(endpoint)
        if item is not None and item.delay > 0:
            self.sleep(item.delay)
            if self._stopping.is_set():
                return
        self.respond(endpoint, request, item, out)
        out.end_stream()


# ---------------------------------------------------------------------------------------------
# Helpers for the subclasses
# ---------------------------------------------------------------------------------------------


def split_text(text: str, size: int | None) -> list[str]:
    """Text deltas: `size` characters each, or word by word (a word keeps its trailing
    whitespace) when `size` is None."""
    if not text:
        return []
    if size:
        return [text[i : i + size] for i in range(0, len(text), size)]
    pieces: list[str] = []
    current = ""
    for char in text:
        if current and not current[-1].isspace() and char.isspace():
            current += char
            continue
        if current and current[-1].isspace() and not char.isspace():
            pieces.append(current)
            current = char
            continue
        current += char
    if current:
        pieces.append(current)
    return pieces


def split_json(raw: str, size: int = 5) -> list[str]:
    """JSON text cut every `size` characters, so pieces end mid-key, mid-string, mid-number:
    only the concatenation is valid JSON. Always at least two pieces when `raw` has two
    characters or more."""
    if len(raw) < 2:
        return [raw] if raw else []
    size = max(1, min(size, len(raw) - 1))
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: words and punctuation marks."""
    tokens = 0
    in_word = False
    for char in text:
        if char.isalnum() or char == "_":
            if not in_word:
                tokens += 1
            in_word = True
        else:
            in_word = False
            if not char.isspace():
                tokens += 1
    return tokens


def text_of(value: Any) -> str:
    """All the text in a JSON value (strings joined by spaces), for token estimates."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return " ".join(text_of(v) for v in value.values())
    if isinstance(value, Sequence):
        return " ".join(text_of(v) for v in value)
    return ""


def tool_arguments(arguments: Mapping[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(dict(arguments))


def unpack_tool_call(spec: ToolCallSpec, make_id: Callable[[], str]) -> tuple[str, str, Any]:
    """(id, name, arguments) of a scripted tool call."""
    if len(spec) == 3:
        name, arguments, call_id = spec
    else:
        name, arguments = spec
        call_id = make_id()
    return call_id, name, arguments
