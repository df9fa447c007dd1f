"""The Anthropic and OpenAI providers, through the real SDKs, against loopback fakes of the
HTTP APIs (tests/fakes): request shape, normalised answers, streaming, tool calls, errors."""

from __future__ import annotations

import pytest

from agents.providers.base import (
    ChatRequest,
    Message,
    Provider,
    ProviderConfig,
    ProviderError,
    StopReason,
    StreamDone,
    TextDelta,
    ToolCall,
    ToolCallReady,
    ToolSpec,
    Usage,
)
from agents.providers.registry import get_provider
from tests.fakes import FakeAnthropic, FakeOpenAI

WEATHER = ToolSpec(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def _provider(kind: str, base_url: str, timeout: float = 5.0) -> Provider:
    return get_provider(
        ProviderConfig(kind=kind, api_key="sk-test-key", base_url=base_url, timeout=timeout)
    )


def _ask(text: str = "Hi", **kwargs: object) -> ChatRequest:
    return ChatRequest(model="model-x", messages=(Message(role="user", content=text),), **kwargs)


# --- Anthropic


def test_anthropic_complete_normalises_text_usage_and_sends_the_right_request(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.queue(
        text="Hello from Claude",
        usage={
            "input_tokens": 12,
            "output_tokens": 4,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 7,
        },
    )
    result = _provider("anthropic", fake_anthropic.base_url).complete(
        _ask("Hi", system="Be brief", temperature=0.2, max_tokens=50, tools=(WEATHER,))
    )
    assert result.text == "Hello from Claude"
    assert result.stop_reason is StopReason.END_TURN
    assert result.usage == Usage(
        input_tokens=12, output_tokens=4, cached_input_tokens=100, cache_write_tokens=7
    )
    sent = fake_anthropic.last_request
    assert sent.api_key == "sk-test-key"
    assert sent.body["system"] == "Be brief"
    assert sent.body["max_tokens"] == 50
    assert sent.body["temperature"] == 0.2
    assert sent.body["tools"][0]["input_schema"]["required"] == ["city"]


def test_anthropic_tool_round_trip_uses_tool_result_turns(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.queue(tool_calls=[("get_weather", {"city": "Lyon"}, "toolu_1")])
    fake_anthropic.queue(text="It is sunny in Lyon.")
    provider = _provider("anthropic", fake_anthropic.base_url)

    first = provider.complete(_ask("Weather in Lyon?", tools=(WEATHER,)))
    assert first.stop_reason is StopReason.TOOL_USE
    assert first.tool_calls == (
        ToolCall(id="toolu_1", name="get_weather", arguments={"city": "Lyon"}),
    )
    second = provider.complete(
        ChatRequest(
            model="model-x",
            tools=(WEATHER,),
            messages=(
                Message(role="user", content="Weather in Lyon?"),
                Message(role="assistant", tool_calls=first.tool_calls),
                Message(role="tool", content="sunny, 24°C", tool_call_id="toolu_1"),
            ),
        )
    )
    assert second.text == "It is sunny in Lyon."
    turns = fake_anthropic.last_request.body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "sunny, 24°C",
    }


def test_anthropic_stream_reassembles_text_and_split_tool_arguments(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.queue(
        text="Let me check the weather for you.",
        tool_calls=[("get_weather", {"city": "São Paulo, Brazil"})],
        usage={"input_tokens": 30, "output_tokens": 25},
    )
    events = list(
        _provider("anthropic", fake_anthropic.base_url).stream(_ask("Weather?", tools=(WEATHER,)))
    )
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    calls = [e.call for e in events if isinstance(e, ToolCallReady)]
    done = events[-1]
    assert isinstance(done, StreamDone)
    assert text == done.result.text == "Let me check the weather for you."
    assert calls[0].arguments == {"city": "São Paulo, Brazil"}
    assert done.result.stop_reason is StopReason.TOOL_USE
    # Output tokens come from message_delta (not added to message_start's placeholder 1).
    assert done.result.usage == Usage(input_tokens=30, output_tokens=25)


# --- OpenAI and OpenAI-compatible


@pytest.mark.parametrize("kind", ["openai", "openai_compatible"])
def test_openai_complete_reports_cached_tokens_apart(fake_openai: FakeOpenAI, kind: str) -> None:
    fake_openai.queue(
        text="Hello from GPT",
        usage={
            "prompt_tokens": 1200,
            "completion_tokens": 9,
            "cached_tokens": 1000,
        },
    )
    result = _provider(kind, fake_openai.base_url).complete(_ask(system="Be brief"))
    assert result.text == "Hello from GPT"
    assert result.usage == Usage(input_tokens=200, output_tokens=9, cached_input_tokens=1000)
    sent = fake_openai.last_request.body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief"}
    assert fake_openai.last_request.api_key == "sk-test-key"


def test_openai_stream_reassembles_split_tool_arguments_and_usage(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.queue(
        tool_calls=[("get_weather", {"city": "Kraków"}), ("get_weather", {"city": "Oslo"})],
        usage={"prompt_tokens": 40, "completion_tokens": 20},
    )
    events = list(
        _provider("openai", fake_openai.base_url).stream(_ask("Two cities", tools=(WEATHER,)))
    )
    calls = [e.call.arguments for e in events if isinstance(e, ToolCallReady)]
    done = events[-1]
    assert isinstance(done, StreamDone)
    assert calls == [{"city": "Kraków"}, {"city": "Oslo"}]
    assert done.result.stop_reason is StopReason.TOOL_USE
    assert done.result.usage == Usage(input_tokens=40, output_tokens=20)
    assert fake_openai.last_request.body["stream_options"] == {"include_usage": True}


def test_openai_length_stop_is_max_tokens(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(text="cut", stop_reason="length")
    result = _provider("openai", fake_openai.base_url).complete(_ask())
    assert result.stop_reason is StopReason.MAX_TOKENS
    assert result.raw_stop_reason == "length"


# --- errors, both providers


@pytest.fixture(params=["anthropic", "openai"])
def fake_and_kind(
    request: pytest.FixtureRequest, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI
) -> tuple[FakeAnthropic | FakeOpenAI, str]:
    return (
        (fake_anthropic, "anthropic") if request.param == "anthropic" else (fake_openai, "openai")
    )


def test_rate_limit_is_retryable_with_its_retry_after(fake_and_kind) -> None:
    fake, kind = fake_and_kind
    fake.queue_error(429, retry_after=7)
    with pytest.raises(ProviderError) as excinfo:
        _provider(kind, fake.base_url).complete(_ask())
    assert (excinfo.value.retryable, excinfo.value.status, excinfo.value.retry_after) == (
        True,
        429,
        7.0,
    )


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (401, False), (400, False)]
)
def test_status_errors_say_whether_a_retry_can_help(
    fake_and_kind, status: int, retryable: bool
) -> None:
    fake, kind = fake_and_kind
    fake.queue_error(status)
    with pytest.raises(ProviderError) as excinfo:
        _provider(kind, fake.base_url).complete(_ask())
    assert excinfo.value.retryable is retryable
    assert excinfo.value.status == status


def test_malformed_json_is_a_retryable_provider_error(fake_and_kind) -> None:
    fake, kind = fake_and_kind
    fake.queue_malformed()
    with pytest.raises(ProviderError, match="unusable response") as excinfo:
        _provider(kind, fake.base_url).complete(_ask())
    assert excinfo.value.retryable


def test_a_slow_server_times_out_as_a_retryable_error(fake_and_kind) -> None:
    fake, kind = fake_and_kind
    fake.queue_delay(5)
    with pytest.raises(ProviderError, match="in time") as excinfo:
        _provider(kind, fake.base_url, timeout=0.3).complete(_ask())
    assert excinfo.value.retryable


def test_a_stream_that_stalls_mid_answer_times_out(fake_and_kind) -> None:
    fake, kind = fake_and_kind
    fake.queue(text="one two three four", chunk_delay=1.0)
    with pytest.raises(ProviderError) as excinfo:
        list(_provider(kind, fake.base_url, timeout=0.3).stream(_ask()))
    assert excinfo.value.retryable


def test_an_error_event_inside_a_stream_is_retryable(fake_and_kind) -> None:
    fake, kind = fake_and_kind
    fake.queue_stream_error("partial answer")
    with pytest.raises(ProviderError) as excinfo:
        list(_provider(kind, fake.base_url).stream(_ask()))
    assert excinfo.value.retryable


def test_broken_tool_json_from_the_model_is_reported(fake_and_kind) -> None:
    fake, kind = fake_and_kind
    fake.queue(tool_calls=[("get_weather", '{"city": "Par')])
    with pytest.raises(ProviderError, match="malformed JSON arguments for tool 'get_weather'"):
        list(_provider(kind, fake.base_url).stream(_ask(tools=(WEATHER,))))
