"""The offline provider: deterministic answers with no network, so the demo and most tests
work with no API keys. Its answers say they come from the offline model."""

from __future__ import annotations

import re
from collections.abc import Iterator

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
