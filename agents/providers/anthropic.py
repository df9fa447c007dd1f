"""Anthropic's Messages API through the official `anthropic` SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import anthropic
import httpx2

from agents.providers.base import (
    ChatRequest,
    ChatResult,
    Message,
    Provider,
    ProviderError,
    StopReason,
    StreamDone,
    StreamEvent,
    StreamProgress,
    TextDelta,
    ToolCall,
    ToolCallReady,
    Usage,
    parse_tool_arguments,
    sdk_client,
    translate_sdk_error,
)

_STOP_REASONS = {
    "end_turn": StopReason.END_TURN,
    "max_tokens": StopReason.MAX_TOKENS,
    "stop_sequence": StopReason.STOP_SEQUENCE,
    "tool_use": StopReason.TOOL_USE,
    "refusal": StopReason.REFUSAL,
}


# Malformed JSON surfaces as JSONDecodeError and a stalled stream as the HTTP client's own errors.
_FAILURES = (anthropic.AnthropicError, httpx2.HTTPError, json.JSONDecodeError)


def translate_error(exc: Exception) -> ProviderError:
    return translate_sdk_error(exc, sdk=anthropic, who="Anthropic")


def _content(message: Message) -> Any:
    if message.role == "tool":
        return [
            {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}
        ]
    if message.role == "assistant" and message.tool_calls:
        blocks: list[dict[str, Any]] = []
        if message.content:
            blocks.append({"type": "text", "text": message.content})
        blocks.extend(
            {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
            for c in message.tool_calls
        )
        return blocks
    return message.content


def _as_blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def to_anthropic_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Anthropic wants alternating user/assistant turns; tool results are user turns, and
    consecutive turns of one role are merged."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        content = _content(message)
        if out and out[-1]["role"] == role:
            out[-1]["content"] = _as_blocks(out[-1]["content"]) + _as_blocks(content)
        else:
            out.append({"role": role, "content": content})
    return out


def _usage(usage: Any) -> Usage:
    return Usage(
        input_tokens=getattr(usage, "input_tokens", 0) or 0,
        output_tokens=getattr(usage, "output_tokens", 0) or 0,
        cached_input_tokens=getattr(usage, "cache_read_input_tokens", 0) or 0,
        cache_write_tokens=getattr(usage, "cache_creation_input_tokens", 0) or 0,
    )


class AnthropicProvider(Provider):
    kind = "anthropic"

    def _client(self) -> anthropic.Anthropic:
        client: anthropic.Anthropic = sdk_client(
            anthropic.Anthropic, self.config, api_key=self.config.api_key
        )
        return client

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": to_anthropic_messages(request.messages),
        }
        if request.system:
            params["system"] = request.system
        if request.temperature is not None:
            # This SDK version has no `temperature` argument; the API still takes the field.
            params["extra_body"] = {"temperature": request.temperature}
        if request.tools:
            params["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in request.tools
            ]
        return params

    def complete(self, request: ChatRequest) -> ChatResult:
        try:
            response = self._client().messages.create(**self._params(request))
        except _FAILURES as exc:
            raise translate_error(exc) from exc
        texts, calls = [], []
        for block in response.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                calls.append(ToolCall(id=block.id, name=block.name, arguments=dict(block.input)))
        return ChatResult(
            text="".join(texts),
            tool_calls=tuple(calls),
            model=response.model,
            stop_reason=_STOP_REASONS.get(response.stop_reason or "", StopReason.OTHER),
            raw_stop_reason=response.stop_reason,
            usage=_usage(response.usage),
        )

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        progress = StreamProgress()
        try:
            events = self._client().messages.create(stream=True, **self._params(request))
            yield from self._events(events, request, progress)
        except _FAILURES as exc:
            raise progress.attach(translate_error(exc)) from exc
        except ProviderError as exc:
            raise progress.attach(exc) from None

    def _events(
        self, events: Any, request: ChatRequest, progress: StreamProgress
    ) -> Iterator[StreamEvent]:
        usage = Usage()
        model = request.model
        raw_stop: str | None = None
        texts: list[str] = []
        calls: list[ToolCall] = []
        open_tools: dict[int, dict[str, Any]] = {}
        for event in events:
            if event.type == "message_start":
                model = event.message.model
                usage = _usage(event.message.usage)
                # Input and cache counts are final here; output_tokens is a placeholder that
                # message_delta replaces. If the stream breaks first, it is estimated instead.
                progress.started = True
                progress.usage = replace(usage, output_tokens=0)
            elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                block = event.content_block
                open_tools[event.index] = {"id": block.id, "name": block.name, "json": []}
            elif event.type == "content_block_delta":
                if event.delta.type == "text_delta":
                    texts.append(event.delta.text)
                    progress.received.append(event.delta.text)
                    yield TextDelta(event.delta.text)
                elif event.delta.type == "input_json_delta":
                    open_tools[event.index]["json"].append(event.delta.partial_json)
                    progress.received.append(event.delta.partial_json)
            elif event.type == "content_block_stop" and event.index in open_tools:
                tool = open_tools.pop(event.index)
                call = ToolCall(
                    id=tool["id"],
                    name=tool["name"],
                    arguments=parse_tool_arguments("".join(tool["json"]), tool=tool["name"]),
                )
                calls.append(call)
                yield ToolCallReady(call)
            elif event.type == "message_delta":
                raw_stop = event.delta.stop_reason
                usage = replace(usage, output_tokens=event.usage.output_tokens or 0)
                progress.usage = usage
        if raw_stop is None:  # the connection closed mid-answer with no error and no end
            raise ProviderError(
                "Anthropic's stream ended before the answer was complete.", retryable=True
            )
        yield StreamDone(
            ChatResult(
                text="".join(texts),
                tool_calls=tuple(calls),
                model=model,
                usage=usage,
                stop_reason=_STOP_REASONS.get(raw_stop or "", StopReason.OTHER),
                raw_stop_reason=raw_stop,
            )
        )
