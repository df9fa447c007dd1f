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

from agents.netguard import guarded_client, refusal_in


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
    """Tokens of one call. `input_tokens` excludes cached input; `cached_input_tokens` are
    input tokens served from the provider's prompt cache (billed at the cached price)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
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
    connection errors); otherwise a retry is pointless (bad key, bad request)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


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
    workspace: its client connects only through the outbound guard (`agents.netguard`), so the
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
        # An error event inside a 200 stream (e.g. overloaded_error) is transient too.
        return ProviderError(
            f"{subject} answered {status}: {exc.message}",
            retryable=status == 429 or status >= 500 or status < 400,
            status=status,
            retry_after=retry_after_seconds(exc.response.headers),
        )
    return ProviderError(f"{subject} sent an unusable response: {exc}", retryable=True)
