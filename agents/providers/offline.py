"""The offline provider: deterministic answers with no network, so the demo and most tests
work with no API keys. Its answers say they come from the offline model."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from agents.providers.base import (
    ChatRequest,
    ChatResult,
    Provider,
    StopReason,
    StreamDone,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallReady,
    Usage,
)

LABEL = "[offline model]"
_ARITHMETIC = re.compile(r"([\d(][\d\s.+\-*/()%^]*[+\-*/%^][\d\s.+\-*/()%^]*[\d)])")


def _tokens(text: str) -> int:
    """A stable stand-in for a tokenizer: about one token per word or symbol."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def schema_instance(schema: dict[str, Any], text: str) -> Any:
    """A small value that satisfies a JSON schema (types, enums, consts, required properties,
    minimums), so agents with an output format work offline."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return schema_instance(schema[key][0], text)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: schema_instance(sub, text) for name, sub in properties.items()}
    if kind == "array":
        count = schema.get("minItems", 1)
        return [schema_instance(schema.get("items", {}), text) for _ in range(count)]
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    value = text[: schema.get("maxLength", len(text))]
    return value.ljust(schema.get("minLength", 0), ".")


class OfflineProvider(Provider):
    kind = "offline"

    def complete(self, request: ChatRequest) -> ChatResult:
        last = request.messages[-1] if request.messages else None
        prompt_tokens = _tokens(request.system) + sum(_tokens(m.content) for m in request.messages)
        tools = {tool.name for tool in request.tools}
        if last is not None and last.role == "tool":
            text = f"{LABEL} The tool returned: {last.content}"
            return self._result(request, text, prompt_tokens)
        question = last.content if last is not None else ""
        match = _ARITHMETIC.search(question)
        if "calculator" in tools and match:
            call = ToolCall(
                id=f"call_offline_{len(request.messages)}",
                name="calculator",
                arguments={"expression": match.group(1).strip()},
            )
            return ChatResult(
                text="",
                stop_reason=StopReason.TOOL_USE,
                usage=Usage(input_tokens=prompt_tokens, output_tokens=8),
                model=request.model,
                tool_calls=(call,),
            )
        words = question.split()
        gist = " ".join(words[:24]) + ("…" if len(words) > 24 else "")
        if request.output_schema is not None:
            text = json.dumps(schema_instance(request.output_schema, gist or "example"))
            return self._result(request, text, prompt_tokens)
        text = (
            (
                f"{LABEL} No LLM provider is configured, so this is a deterministic reply. "
                f"You asked: “{gist}”."
            )
            if gist
            else f"{LABEL} Hello! Ask me anything."
        )
        return self._result(request, text, prompt_tokens)

    def _result(self, request: ChatRequest, text: str, prompt_tokens: int) -> ChatResult:
        words = text.split(" ")
        stop = StopReason.END_TURN
        if len(words) > request.max_tokens:
            text, stop = " ".join(words[: request.max_tokens]), StopReason.MAX_TOKENS
        return ChatResult(
            text=text,
            stop_reason=stop,
            model=request.model,
            usage=Usage(input_tokens=prompt_tokens, output_tokens=_tokens(text)),
        )

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        result = self.complete(request)
        for index, word in enumerate(result.text.split(" ")):
            yield TextDelta(word if index == 0 else " " + word)
        for call in result.tool_calls:
            yield ToolCallReady(call)
        yield StreamDone(result)
