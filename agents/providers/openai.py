"""OpenAI's Chat Completions API through the official `openai` SDK; with a `base_url` it also
speaks to OpenAI-compatible servers (Ollama, vLLM, LM Studio)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import openai

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
    "stop": StopReason.END_TURN,
    "length": StopReason.MAX_TOKENS,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "content_filter": StopReason.REFUSAL,
}


# Malformed JSON surfaces as JSONDecodeError and a stalled stream as the HTTP client's own errors.
_FAILURES = (openai.OpenAIError, httpx2.HTTPError, json.JSONDecodeError)


def translate_error(exc: Exception) -> ProviderError:
    return translate_sdk_error(exc, sdk=openai, who="the model server")


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                }
                for c in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    cached = (getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    prompt = usage.prompt_tokens or 0
    # OpenAI counts cached tokens inside prompt_tokens; we report them apart.
    return Usage(
        input_tokens=max(prompt - cached, 0),
        output_tokens=usage.completion_tokens or 0,
        cached_input_tokens=cached,
    )


class OpenAIProvider(Provider):
    kind = "openai"

    def _client(self) -> openai.OpenAI:
        client: openai.OpenAI = sdk_client(
            openai.OpenAI, self.config, api_key=self.config.api_key or "not-needed"
        )
        return client

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages.extend(_message(m) for m in request.messages)
        params: dict[str, Any] = {"model": request.model, "messages": messages}
        # Compatible servers (Ollama, vLLM) know `max_tokens`; OpenAI's newer models want
        # `max_completion_tokens`. The provider configuration says which.
        params[self.config.extra.get("max_tokens_param", "max_tokens")] = request.max_tokens
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in request.tools
            ]
        return params

    def complete(self, request: ChatRequest) -> ChatResult:
        try:
            response = self._client().chat.completions.create(**self._params(request))
        except _FAILURES as exc:
            raise translate_error(exc) from exc
        if not response.choices:
            raise ProviderError("The model server answered with no choices.", retryable=True)
        choice = response.choices[0]
        calls = tuple(
            ToolCall(
                id=c.id,
                name=c.function.name,
                arguments=parse_tool_arguments(c.function.arguments or "", tool=c.function.name),
            )
            for c in (choice.message.tool_calls or [])
            if c.type == "function"
        )
        return ChatResult(
            text=choice.message.content or "",
            tool_calls=calls,
            model=response.model,
            stop_reason=_STOP_REASONS.get(choice.finish_reason or "", StopReason.OTHER),
            raw_stop_reason=choice.finish_reason,
            usage=_usage(response.usage),
        )

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        progress = StreamProgress()
        try:
            chunks = self._client().chat.completions.create(
                stream=True, stream_options={"include_usage": True}, **self._params(request)
            )
            # The response headers came back 200: the server accepted the request.
            progress.started = True
            yield from self._events(chunks, request, progress)
        except _FAILURES as exc:
            raise progress.attach(translate_error(exc)) from exc
        except ProviderError as exc:
            raise progress.attach(exc) from None

    def _events(
        self, chunks: Any, request: ChatRequest, progress: StreamProgress
    ) -> Iterator[StreamEvent]:
        """Servers that ignore `include_usage` (many local ones) send no usage chunk: the
        result's usage stays empty and the gateway estimates it."""
        texts: list[str] = []
        calls: list[ToolCall] = []
        pending: dict[int, dict[str, Any]] = {}
        usage = Usage()
        model = request.model
        raw_stop: str | None = None
        for chunk in chunks:
            model = chunk.model or model
            if chunk.usage is not None:
                usage = progress.usage = _usage(chunk.usage)
            for choice in chunk.choices:
                delta = choice.delta
                if delta.content:
                    texts.append(delta.content)
                    progress.received.append(delta.content)
                    yield TextDelta(delta.content)
                for part in delta.tool_calls or []:
                    slot = pending.setdefault(part.index, {"id": "", "name": "", "args": []})
                    if part.id:
                        slot["id"] = part.id
                    if part.function is not None:
                        slot["name"] = part.function.name or slot["name"]
                        slot["args"].append(part.function.arguments or "")
                        progress.received.append(part.function.arguments or "")
                if choice.finish_reason:
                    raw_stop = choice.finish_reason
                    for index in sorted(pending):
                        slot = pending.pop(index)
                        call = ToolCall(
                            id=slot["id"],
                            name=slot["name"],
                            arguments=parse_tool_arguments(
                                "".join(slot["args"]), tool=slot["name"]
                            ),
                        )
                        calls.append(call)
                        yield ToolCallReady(call)
        if raw_stop is None:  # the connection closed mid-answer with no error and no end
            raise ProviderError(
                "The model server's stream ended before the answer was complete.", retryable=True
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
