from __future__ import annotations

import pytest

from agents.providers.base import (
    ChatRequest,
    Message,
    ProviderConfig,
    StopReason,
    StreamDone,
    TextDelta,
    ToolCallReady,
    ToolSpec,
)
from agents.providers.offline import LABEL
from agents.providers.registry import get_provider

CALCULATOR = ToolSpec(
    name="calculator",
    description="Evaluate arithmetic",
    parameters={"type": "object", "properties": {"expression": {"type": "string"}}},
)


def _ask(text: str, **kwargs: object) -> ChatRequest:
    return ChatRequest(model="offline-1", messages=(Message(role="user", content=text),), **kwargs)


def test_offline_answers_deterministically_and_says_so() -> None:
    provider = get_provider(ProviderConfig(kind="offline"))
    first = provider.complete(_ask("Summarise our refund policy"))
    second = provider.complete(_ask("Summarise our refund policy"))
    assert first == second
    assert first.text.startswith(LABEL)
    assert "refund policy" in first.text
    assert first.stop_reason is StopReason.END_TURN
    assert first.usage.input_tokens > 0
    assert first.usage.output_tokens > 0


def test_offline_uses_the_calculator_when_it_may_and_then_answers_with_the_result() -> None:
    provider = get_provider(ProviderConfig(kind="offline"))
    first = provider.complete(_ask("What is 12 * (3 + 4)?", tools=(CALCULATOR,)))
    assert first.stop_reason is StopReason.TOOL_USE
    assert first.tool_calls[0].name == "calculator"
    assert first.tool_calls[0].arguments == {"expression": "12 * (3 + 4)"}

    follow_up = ChatRequest(
        model="offline-1",
        tools=(CALCULATOR,),
        messages=(
            Message(role="user", content="What is 12 * (3 + 4)?"),
            Message(role="assistant", tool_calls=first.tool_calls),
            Message(role="tool", content="84", tool_call_id=first.tool_calls[0].id),
        ),
    )
    final = provider.complete(follow_up)
    assert final.stop_reason is StopReason.END_TURN
    assert "84" in final.text


def test_offline_never_calls_a_tool_it_was_not_given() -> None:
    provider = get_provider(ProviderConfig(kind="offline"))
    result = provider.complete(_ask("What is 2 + 2?"))
    assert result.tool_calls == ()


def test_offline_stream_reassembles_to_the_complete_answer() -> None:
    provider = get_provider(ProviderConfig(kind="offline"))
    events = list(provider.stream(_ask("Tell me about pgvector indexes")))
    deltas = "".join(e.text for e in events if isinstance(e, TextDelta))
    done = events[-1]
    assert isinstance(done, StreamDone)
    assert (
        deltas == done.result.text == provider.complete(_ask("Tell me about pgvector indexes")).text
    )
    assert sum(isinstance(e, TextDelta) for e in events) > 3


def test_offline_stream_reports_tool_calls() -> None:
    provider = get_provider(ProviderConfig(kind="offline"))
    events = list(provider.stream(_ask("compute 6*7", tools=(CALCULATOR,))))
    assert [type(e) for e in events[-2:]] == [ToolCallReady, StreamDone]


def test_max_tokens_cuts_the_answer_and_says_why() -> None:
    provider = get_provider(ProviderConfig(kind="offline"))
    result = provider.complete(_ask("a long question " * 20, max_tokens=5))
    assert result.stop_reason is StopReason.MAX_TOKENS
    assert len(result.text.split(" ")) == 5


def test_unknown_provider_kind_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="Unknown provider kind 'gemini'"):
        get_provider(ProviderConfig(kind="gemini"))


def test_offline_fetches_a_url_in_the_question_only_when_it_has_the_http_tool() -> None:
    http = ToolSpec(name="http_request", description="Fetch", parameters={"type": "object"})
    provider = get_provider(ProviderConfig(kind="offline"))
    question = "Summarise https://en.wikipedia.org/wiki/Django_(web_framework)."
    with_tool = provider.complete(_ask(question, tools=(http, CALCULATOR)))
    without = provider.complete(_ask(question, tools=(CALCULATOR,)))
    assert with_tool.stop_reason is StopReason.TOOL_USE
    assert with_tool.tool_calls[0].name == "http_request"
    assert with_tool.tool_calls[0].arguments == {
        "url": "https://en.wikipedia.org/wiki/Django_(web_framework)"
    }
    bracketed = provider.complete(_ask("See (https://docs.python.org/3/)!", tools=(http,)))
    assert bracketed.tool_calls[0].arguments == {"url": "https://docs.python.org/3/"}
    assert without.tool_calls == ()
    assert without.text.startswith(LABEL)
