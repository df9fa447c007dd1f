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


_URL = re.compile(r"https?://[^\s<>\"'`]+")
_PASSAGE = re.compile(r"^\[(\d+)\] (.+?): (.*)$")


def _called_tool(request: ChatRequest, call_id: str | None) -> str | None:
    """The name of the tool whose result has this call id."""
    for message in reversed(request.messages):
        for call in message.tool_calls:
            if call.id == call_id:
                return call.name
    return None


def _cited_answer(tool_output: str) -> str:
    """Quote the best passage of a knowledge_search result and list the sources, keeping the
    [n] markers, so offline answers show their citations."""
    passages = [m.groups() for m in map(_PASSAGE.match, tool_output.splitlines()) if m]
    if not passages:
        return f"{LABEL} The tool returned: {tool_output}"
    number, _, text = passages[0]
    words = text.split()
    quote = " ".join(words[:60]) + ("…" if len(words) > 60 else "")
    sources = "; ".join(f"[{n}] {citation}" for n, citation, _ in passages)
    return f"{LABEL} The tool returned: {quote} [{number}]\n\nSources: {sources}"


def _url_in(text: str) -> str | None:
    """The first URL in the text, without the sentence's punctuation after it (a closing
    parenthesis stays when the URL opened one, as in Wikipedia titles)."""
    match = _URL.search(text)
    if match is None:
        return None
    url = match.group(0)
    while url and (url[-1] in ".,;:!?]" or (url[-1] == ")" and url.count("(") < url.count(")"))):
        url = url[:-1]
    return url


def _tool_call(
    request: ChatRequest, prompt_tokens: int, name: str, arguments: dict[str, Any]
) -> ChatResult:
    call = ToolCall(id=f"call_offline_{len(request.messages)}", name=name, arguments=arguments)
    return ChatResult(
        text="",
        stop_reason=StopReason.TOOL_USE,
        usage=Usage(input_tokens=prompt_tokens, output_tokens=8),
        model=request.model,
        tool_calls=(call,),
    )


class OfflineProvider(Provider):
    kind = "offline"

    def complete(self, request: ChatRequest) -> ChatResult:
        last = request.messages[-1] if request.messages else None
        prompt_tokens = _tokens(request.system) + sum(_tokens(m.content) for m in request.messages)
        tools = {tool.name for tool in request.tools}
        if last is not None and last.role == "tool":
            if _called_tool(request, last.tool_call_id) == "knowledge_search":
                text = _cited_answer(last.content)
                if request.output_schema is not None:
                    text = json.dumps(schema_instance(request.output_schema, text))
                return self._result(request, text, prompt_tokens)
            text = f"{LABEL} The tool returned: {last.content}"
            return self._result(request, text, prompt_tokens)
        question = last.content if last is not None else ""
        match = _ARITHMETIC.search(question)
        url = _url_in(question)
        if "http_request" in tools and url:
            return _tool_call(request, prompt_tokens, "http_request", {"url": url})
        if "calculator" in tools and match:
            return _tool_call(
                request, prompt_tokens, "calculator", {"expression": match.group(1).strip()}
            )
        searchable = last is not None and last.role == "user" and question.strip()
        if "knowledge_search" in tools and searchable:
            return _tool_call(
                request, prompt_tokens, "knowledge_search", {"query": question.strip()[:1000]}
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
