"""Recorded calls: replaying a step's model and tool calls instead of making them again.

The workflow engine runs each step attempt inside `recording(recorder)`. Every model call the
gateway makes and every tool call the tool loop makes in that block asks the recorder first:

- `recorder.replay(kind, fingerprint)` returns the stored response of the call at the same
  position (same kind, same index within the attempt) when its request fingerprint matches;
  the call is then not made, not paid for and not written to the ledger again;
- otherwise the call is made and `recorder.record(...)` stores it. For model calls the gateway
  does that inside the transaction that writes the call's ledger row, so a worker killed at any
  point leaves either both (the call is replayed) or neither (it is made again, once).

Outside a `recording` block (chat, agent runs) nothing changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict
from decimal import Decimal
from typing import Any, Protocol

from agents.providers.base import ChatRequest, ChatResult, StopReason, ToolCall, Usage

LLM = "llm"
TOOL = "tool"


class CallRecorder(Protocol):
    def replay(self, kind: str, fingerprint: str) -> dict[str, Any] | None:
        """The recorded response of the next call of this kind, or None (then the call is made
        and must be recorded with `record`)."""

    def record(
        self, kind: str, fingerprint: str, response: dict[str, Any], cost_usd: Decimal
    ) -> None:
        """Store the call just made at the position the last `replay` returned None for."""


_current: ContextVar[CallRecorder | None] = ContextVar("call_recorder", default=None)


def current() -> CallRecorder | None:
    return _current.get()


@contextmanager
def recording(recorder: CallRecorder) -> Iterator[None]:
    token = _current.set(recorder)
    try:
        yield
    finally:
        _current.reset(token)


def fingerprint(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def request_fingerprint(model: str, request: ChatRequest) -> str:
    return fingerprint({"model": model, "request": asdict(request)})


def tool_fingerprint(name: str, arguments: dict[str, Any]) -> str:
    return fingerprint({"tool": name, "arguments": arguments})


def result_to_json(result: ChatResult) -> dict[str, Any]:
    return {
        "text": result.text,
        "stop_reason": result.stop_reason.value,
        "usage": asdict(result.usage),
        "model": result.model,
        "tool_calls": [asdict(call) for call in result.tool_calls],
        "raw_stop_reason": result.raw_stop_reason,
    }


def result_from_json(data: dict[str, Any]) -> ChatResult:
    return ChatResult(
        text=data["text"],
        stop_reason=StopReason(data["stop_reason"]),
        usage=Usage(**data["usage"]),
        model=data["model"],
        tool_calls=tuple(ToolCall(**call) for call in data["tool_calls"]),
        raw_stop_reason=data.get("raw_stop_reason"),
    )
