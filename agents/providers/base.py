"""The provider interface every LLM integration implements, and the normalised types it speaks.

Callers (the gateway, later) never see an SDK type: requests go in as `ChatRequest`, answers
come back as `ChatResult` or a stream of `StreamEvent`s, failures as `ProviderError` carrying
whether a retry or a fallback could help.
"""

from __future__ import annotations

import abc
import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import httpx2
from django.conf import settings

from agents.outbound.guard import guarded_client, refusal_in


class StopReason(StrEnum):
    """Why a model stopped, the same for every provider."""

    END_TURN = "end_turn"
    MAX_TOKENS = "max_tokens"
    STOP_SEQUENCE = "stop_sequence"
    TOOL_USE = "tool_use"
    REFUSAL = "refusal"
    OTHER = "other"


@dataclass(frozen=True)
class Usage:
    """Tokens of one call, split the way they are priced: `input_tokens` is uncached input,
    `cached_input_tokens` input read from the provider's prompt cache (the cached price),
    `cache_write_tokens` input written to it (the cache-write price). `estimated`: some count
    was not reported by the provider and was estimated locally (`agents/gateway/tokens.py`)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    estimated: bool = False

    @property
    def tokens_in(self) -> int:
        """ "Tokens in" everywhere (run, chat and usage pages, CSV, API): every input token the
        model read, whether uncached, read from the cache or written to it."""
        return self.input_tokens + self.cached_input_tokens + self.cache_write_tokens

    @property
    def reported_nothing(self) -> bool:
        return not (self.tokens_in or self.output_tokens)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            estimated=self.estimated or other.estimated,
        )


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call: its name, what it does, and a JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Message:
    """One turn. `tool_calls` on assistant turns; `tool_call_id` on tool results."""

    role: Literal["user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    system: str = ""
    temperature: float | None = None
    max_tokens: int = 1024
    tools: tuple[ToolSpec, ...] = ()
    # A JSON schema the answer must match. Real providers get it as an instruction in the
    # system prompt (added by the caller); the offline provider answers with an instance.
    output_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class ChatResult:
    text: str
    stop_reason: StopReason
    usage: Usage
    model: str
    tool_calls: tuple[ToolCall, ...] = ()
    raw_stop_reason: str | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallReady:
    """A complete tool call, emitted once its argument deltas have all arrived."""

    call: ToolCall


@dataclass(frozen=True)
class StreamDone:
    result: ChatResult


StreamEvent = TextDelta | ToolCallReady | StreamDone


class ProviderError(Exception):
    """A failed call. `retryable`: the same target may succeed later (429, 5xx, timeouts,
    connection errors); otherwise a retry is pointless (bad key, bad request).

    `usage` is None when the provider never began answering (an HTTP error, a refused
    connection: nothing to pay). A stream that broke off after the provider accepted it
    carries what the provider reported so far (`Usage()` if nothing) and `received`, the
    text and tool-argument text that had arrived, so the ledger can estimate the rest."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
        usage: Usage | None = None,
        received: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.usage = usage
        self.received = received


@dataclass
class StreamProgress:
    """What a provider's stream has delivered so far, attached to the error if it breaks."""

    started: bool = False  # the provider accepted the request and began answering
    usage: Usage = field(default_factory=Usage)  # counts the provider reported so far
    received: list[str] = field(default_factory=list)

    def attach(self, error: ProviderError) -> ProviderError:
        if self.started and error.usage is None:
            error.usage = self.usage
            error.received = "".join(self.received)
        return error


@dataclass(frozen=True)
class ProviderConfig:
    """What it takes to reach one provider endpoint."""

    kind: str
    api_key: str = ""
    base_url: str | None = None
    timeout: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=64)
def _client(
    factory: Callable[..., Any],
    pid: int,
    api_key: str,
    base_url: str | None,
    timeout: float,
    guarded: bool,
) -> Any:
    http_client = guarded_client(timeout=timeout, follow_redirects=True) if guarded else None
    return factory(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        max_retries=0,
        http_client=http_client,
    )


def sdk_client(factory: Callable[..., Any], config: ProviderConfig, *, api_key: str) -> Any:
    """One SDK client per (SDK, key, base URL, timeout) per process, reused across calls.

    Building a client costs tens of milliseconds (an HTTP client with a TLS context) and a new
    client cannot reuse pooled connections; both dwarfed the gateway's own work. The process id
    is part of the key so a forked worker never shares its parent's sockets. The gateway owns
    retries, so the SDK's are off.

    A base URL other than the operator's own (LLM_PLATFORM_BASE_URLS) was chosen by a
    workspace: its client connects only through the outbound guard (`agents.outbound.guard`), so the
    URL is checked on every connection and every redirect hop, not only when it was saved."""
    trusted = config.base_url is None or config.base_url in settings.LLM_PLATFORM_BASE_URLS.values()
    return _client(factory, os.getpid(), api_key, config.base_url, config.timeout, not trusted)


class Provider(abc.ABC):
    kind: str

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def complete(self, request: ChatRequest) -> ChatResult:
        """One whole answer."""

    @abc.abstractmethod
    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        """Text deltas and finished tool calls as they arrive, then exactly one `StreamDone`."""


def parse_tool_arguments(raw: str, *, tool: str) -> dict[str, Any]:
    """Tool arguments arrive as JSON text (whole, or joined from stream deltas)."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProviderError(
            f"The model sent malformed JSON arguments for tool '{tool}'.", retryable=True
        ) from exc
    if not isinstance(value, dict):
        raise ProviderError(
            f"The model sent non-object arguments for tool '{tool}'.", retryable=True
        )
    return value


def retry_after_seconds(headers: Any) -> float | None:
    """The `retry-after` header (seconds) of an error response, if it is a number."""
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def translate_sdk_error(exc: Exception, *, sdk: Any, who: str) -> ProviderError:
    """Map an exception of the anthropic or openai SDK (they share class names) to a
    ProviderError that says whether retrying could help."""
    subject = who[:1].upper() + who[1:]
    refused = refusal_in(exc)
    if refused is not None:  # the address will not become safe by retrying
        return ProviderError(f"Refused to connect to {who}: {refused.message}", retryable=False)
    if isinstance(exc, sdk.APITimeoutError | httpx2.TimeoutException):
        return ProviderError(f"{subject} did not answer in time.", retryable=True)
    if isinstance(exc, sdk.APIConnectionError | httpx2.TransportError):
        return ProviderError(f"Cannot reach {who}: {exc}", retryable=True)
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        error_type, detail = _error_detail(exc)
        if error_type == "overloaded_error" or status in (503, 529):
            message = f"{subject} is overloaded; try again in a moment."
        elif status == 429:
            message = f"{subject} is rate-limiting us; try again in a moment."
        elif status < 400:  # an error event inside a 200 stream
            message = f"{subject} stopped with an error: {detail}"
        else:
            message = f"{subject} answered {status}: {detail}"
        # An error event inside a 200 stream (e.g. overloaded_error) is transient too.
        return ProviderError(
            message,
            retryable=status == 429 or status >= 500 or status < 400,
            status=status,
            retry_after=retry_after_seconds(exc.response.headers),
        )
    if isinstance(exc, sdk.APIError):  # openai: an error chunk inside a stream, no status
        error_type, detail = _error_detail(exc)
        if error_type == "overloaded_error":
            return ProviderError(f"{subject} is overloaded; try again in a moment.", retryable=True)
        return ProviderError(f"{subject} stopped with an error: {detail}", retryable=True)
    return ProviderError(f"{subject} sent an unusable response: {exc}", retryable=True)


def _error_detail(exc: Any) -> tuple[str, str]:
    """The error's type and human message from the API's error body (`{"error": {"type",
    "message"}}` or the inner object itself), never the body's repr."""
    body = getattr(exc, "body", None)
    inner = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(inner, dict):
        message = inner.get("message")
        return str(inner.get("type") or ""), str(message) if message else "unknown error"
    return str(getattr(exc, "type", "") or ""), str(getattr(exc, "message", "") or exc)
