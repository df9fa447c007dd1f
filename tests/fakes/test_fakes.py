"""The fakes speak the real APIs well enough for the real SDKs: text, streams, tool calls with
split arguments, usage with cached tokens, errors, timeouts, malformed bodies, embeddings.

No database: run with `pytest tests/fakes -p no:django` (or with DJANGO_SETTINGS_MODULE set).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from tests.fakes import FakeAnthropic, FakeOpenAI, embedding_for

KEY = "sk-test-key"
# typed as Any: the SDKs want their TypedDicts, the tests spell plain dicts
USER: Any = [{"role": "user", "content": "What is 2+2?"}]
CALCULATOR_ANTHROPIC: Any = {
    "name": "calculator",
    "description": "Evaluate arithmetic",
    "input_schema": {"type": "object", "properties": {"expression": {"type": "string"}}},
}
CALCULATOR_OPENAI: Any = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate arithmetic",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
    },
}
ARGS = {"expression": "(12.5 * 4) + 2", "precision": 2, "notes": ["a", "b"]}


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as fake:
        yield fake
    assert fake.server_errors == []


@pytest.fixture
def claude(fake_anthropic: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(
        api_key=KEY, base_url=fake_anthropic.base_url, max_retries=0, timeout=10
    )
    yield client
    client.close()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=KEY) as fake:
        yield fake
    assert fake.server_errors == []


@pytest.fixture
def gpt(fake_openai: FakeOpenAI) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url, max_retries=0, timeout=10)
    yield client
    client.close()


# ---------------------------------------------------------------------------------------------
# Anthropic
# ---------------------------------------------------------------------------------------------


def test_anthropic_text_and_what_the_sdk_sent(
    fake_anthropic: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    fake_anthropic.queue(text="Hello", usage={"input_tokens": 11, "output_tokens": 2})

    message = claude.messages.create(
        model="claude-test-1",
        max_tokens=100,
        system="Be brief.",
        messages=USER,
    )

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == "claude-test-1"
    assert [(block.type, block.text) for block in message.content] == [("text", "Hello")]
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.usage.input_tokens == 11
    assert message.usage.output_tokens == 2
    assert message.usage.cache_read_input_tokens == 0

    sent = fake_anthropic.last_request
    assert (sent.method, sent.path, sent.endpoint) == ("POST", "/v1/messages", "messages")
    assert sent.body["model"] == "claude-test-1"
    assert sent.body["system"] == "Be brief."
    assert sent.body["messages"] == USER
    assert sent.body["max_tokens"] == 100
    assert "stream" not in sent.body
    # anthropic 2.x sends `api_key` as a Bearer token, not as `x-api-key`
    assert sent.api_key == KEY
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert "x-api-key" not in sent.headers
    assert sent.header("anthropic-version")
    assert fake_anthropic.pending == 0


def test_anthropic_accepts_x_api_key_and_rejects_a_wrong_key(
    fake_anthropic: FakeAnthropic,
) -> None:
    with anthropic.Anthropic(
        api_key=None,
        auth_token=None,
        base_url=fake_anthropic.base_url,
        max_retries=0,
        default_headers={"x-api-key": KEY},
    ) as client:
        client.messages.create(model="m", max_tokens=5, messages=USER)
    assert fake_anthropic.last_request.headers["x-api-key"] == KEY

    with (
        anthropic.Anthropic(
            api_key="wrong", base_url=fake_anthropic.base_url, max_retries=0
        ) as client,
        pytest.raises(anthropic.AuthenticationError) as caught,
    ):
        client.messages.create(model="m", max_tokens=5, messages=USER)
    assert caught.value.type == "authentication_error"


def test_anthropic_default_answer_when_nothing_is_queued(claude: anthropic.Anthropic) -> None:
    first = claude.messages.create(model="m", max_tokens=50, messages=USER)
    second = claude.messages.create(model="m", max_tokens=50, messages=USER)
    assert first.content[0].text == second.content[0].text == FakeAnthropic().default_text
    assert first.usage.input_tokens > 0
    assert first.usage.output_tokens > 0


def test_anthropic_stream_helper_assembles_text_and_usage(
    fake_anthropic: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    fake_anthropic.queue(
        text="The answer is four.",
        usage={
            "input_tokens": 30,
            "output_tokens": 6,
            "cache_read_input_tokens": 1200,
            "cache_creation_input_tokens": 50,
        },
    )

    with claude.messages.stream(model="claude-test-1", max_tokens=100, messages=USER) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(pieces) > 1
    assert "".join(pieces) == "The answer is four."
    assert final.content[0].text == "The answer is four."
    assert final.stop_reason == "end_turn"
    # input/cache counts come from message_start, output_tokens from message_delta
    assert final.usage.input_tokens == 30
    assert final.usage.output_tokens == 6
    assert final.usage.cache_read_input_tokens == 1200
    assert final.usage.cache_creation_input_tokens == 50
    assert fake_anthropic.last_request.body["stream"] is True


def test_anthropic_raw_stream_has_the_real_event_sequence(
    fake_anthropic: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    fake_anthropic.queue(
        text="Let me compute.",
        tool_calls=[("calculator", ARGS, "toolu_01")],
        usage={"input_tokens": 40, "output_tokens": 25, "cache_read_input_tokens": 8},
    )

    events = list(
        claude.messages.create(
            model="claude-test-1",
            max_tokens=100,
            messages=USER,
            tools=[CALCULATOR_ANTHROPIC],
            stream=True,
        )
    )

    kinds = [event.type for event in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 2
    assert "ping" not in kinds  # sent by the fake, dropped by the SDK's SSE reader

    start = events[0].message
    assert start.usage.input_tokens == 40
    assert start.usage.cache_read_input_tokens == 8
    assert start.content == []
    assert start.stop_reason is None

    text = "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == "Let me compute."

    tool_start = next(
        e for e in events if e.type == "content_block_start" and e.content_block.type == "tool_use"
    )
    assert (tool_start.index, tool_start.content_block.id) == (1, "toolu_01")
    assert tool_start.content_block.name == "calculator"
    fragments = [
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert fragments[0] == ""  # the real API opens with an empty fragment too
    assert len(fragments) > 3
    assert any(not _is_json(fragment) for fragment in fragments if fragment)
    assert json.loads("".join(fragments)) == ARGS

    delta = events[-2]
    assert delta.delta.stop_reason == "tool_use"
    assert delta.usage.output_tokens == 25
    assert delta.usage.input_tokens is None  # only output_tokens, unless full_delta_usage


def test_anthropic_stream_helper_reassembles_tool_input(
    fake_anthropic: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    fake_anthropic.queue(tool_calls=[("calculator", ARGS), ("calculator", {"expression": "1"})])

    with claude.messages.stream(
        model="m", max_tokens=100, messages=USER, tools=[CALCULATOR_ANTHROPIC]
    ) as stream:
        final = stream.get_final_message()

    assert [block.type for block in final.content] == ["tool_use", "tool_use"]
    assert final.content[0].input == ARGS
    assert final.content[1].input == {"expression": "1"}
    assert final.content[0].id != final.content[1].id
    assert final.stop_reason == "tool_use"


def test_anthropic_tool_call_and_cached_usage_non_streaming(
    fake_anthropic: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    fake_anthropic.queue(
        tool_calls=[("calculator", {"expression": "2+2"})],
        usage={
            "input_tokens": 9,
            "output_tokens": 4,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
        },
    )

    message = claude.messages.create(
        model="m", max_tokens=100, messages=USER, tools=[CALCULATOR_ANTHROPIC]
    )

    (block,) = message.content
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_")
    assert (block.name, block.input) == ("calculator", {"expression": "2+2"})
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 4)
    assert message.usage.cache_read_input_tokens == 100
    assert message.usage.cache_creation_input_tokens == 20
    assert fake_anthropic.last_request.body["tools"] == [CALCULATOR_ANTHROPIC]


def test_anthropic_max_tokens_stop_and_full_delta_usage() -> None:
    with (
        FakeAnthropic(full_delta_usage=True) as fake,
        anthropic.Anthropic(api_key=KEY, base_url=fake.base_url, max_retries=0) as client,
    ):
        fake.queue(
            text="Cut o", stop_reason="max_tokens", usage={"input_tokens": 3, "output_tokens": 5}
        )
        events = list(client.messages.create(model="m", max_tokens=5, messages=USER, stream=True))
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "max_tokens"
    assert (delta.usage.input_tokens, delta.usage.output_tokens) == (3, 5)


def test_anthropic_rate_limit(fake_anthropic: FakeAnthropic, claude: anthropic.Anthropic) -> None:
    fake_anthropic.queue_error(429, retry_after=7)
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(model="m", max_tokens=10, messages=USER)
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "7"
    assert error.type == "rate_limit_error"
    assert error.body["type"] == "error"
    assert error.request_id
    assert error.request_id.startswith("req_")
    # the next call is fine again
    assert claude.messages.create(model="m", max_tokens=10, messages=USER).content[0].text


def test_anthropic_server_error(fake_anthropic: FakeAnthropic, claude: anthropic.Anthropic) -> None:
    fake_anthropic.queue_error(500)
    with pytest.raises(anthropic.InternalServerError) as caught:
        claude.messages.create(model="m", max_tokens=10, messages=USER)
    assert caught.value.status_code == 500
    assert caught.value.type == "api_error"

    fake_anthropic.queue_error(529)
    with pytest.raises(anthropic.OverloadedError):
        claude.messages.create(model="m", max_tokens=10, messages=USER)


def test_anthropic_timeout(fake_anthropic: FakeAnthropic, claude: anthropic.Anthropic) -> None:
    fake_anthropic.queue_delay(30, text="too late")
    with pytest.raises(anthropic.APITimeoutError):
        claude.with_options(timeout=0.3).messages.create(model="m", max_tokens=10, messages=USER)


def test_anthropic_timeout_between_stream_chunks_surfaces_as_a_timeout(
    fake_anthropic: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    # Before anthropic 2.17 a read timeout once the stream had started escaped as a bare
    # httpx ReadTimeout; 2.17 wraps it in APITimeoutError. The provider catches both
    # (agents/providers/anthropic.py), and a fresh install takes whichever is newest.
    fake_anthropic.queue(text="slow words here", chunk_delay=30)
    slow = claude.with_options(timeout=0.3)
    with pytest.raises((httpx2.ReadTimeout, anthropic.APITimeoutError)):
        list(slow.messages.create(model="m", max_tokens=10, messages=USER, stream=True))


def test_anthropic_malformed_json(
    fake_anthropic: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    # not wrapped in an SDK exception: the stdlib's JSONDecodeError escapes as is
    fake_anthropic.queue_malformed()
    with pytest.raises(json.JSONDecodeError):
        claude.messages.create(model="m", max_tokens=10, messages=USER)

    fake_anthropic.queue_malformed()
    with pytest.raises(json.JSONDecodeError):
        list(claude.messages.create(model="m", max_tokens=10, messages=USER, stream=True))


def test_anthropic_error_inside_a_stream(
    fake_anthropic: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    fake_anthropic.queue_stream_error("Partial answ", error_type="overloaded_error")
    seen: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        claude.messages.stream(model="m", max_tokens=10, messages=USER) as stream,
    ):
        seen.extend(stream.text_stream)
    assert "".join(seen) == "Partial answ"
    # the HTTP status was 200, so the SDK cannot pick OverloadedError: only `.type` tells
    assert type(caught.value) is anthropic.APIStatusError
    assert caught.value.status_code == 200
    assert caught.value.type == "overloaded_error"


def test_anthropic_strict_rejects_what_the_real_api_rejects(
    fake_anthropic: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="system"):
        claude.messages.create(
            model="m", max_tokens=10, messages=[{"role": "system", "content": "x"}, *USER]
        )
    with pytest.raises(anthropic.BadRequestError, match="tool_result"):
        claude.messages.create(
            model="m",
            max_tokens=10,
            tools=[CALCULATOR_ANTHROPIC],
            messages=[
                *USER,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "calculator", "input": {}},
                    ],
                },
                {"role": "user", "content": "well?"},
            ],
        )
    # anthropic 2.x has no `temperature` parameter at all; it can only go in `extra_body`
    with pytest.raises(anthropic.BadRequestError, match="temperature"):
        claude.messages.create(
            model="m", max_tokens=10, messages=USER, extra_body={"temperature": 1.5}
        )
    # a well-formed tool round trip passes
    claude.messages.create(
        model="m",
        max_tokens=10,
        tools=[CALCULATOR_ANTHROPIC],
        messages=[
            *USER,
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "calculator", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "4"},
                ],
            },
        ],
    )


def test_anthropic_count_tokens(fake_anthropic: FakeAnthropic, claude: anthropic.Anthropic) -> None:
    fake_anthropic.queue(usage={"input_tokens": 77}, endpoint="count_tokens")
    assert claude.messages.count_tokens(model="m", messages=USER).input_tokens == 77


# ---------------------------------------------------------------------------------------------
# OpenAI chat completions
# ---------------------------------------------------------------------------------------------


def test_openai_text_and_what_the_sdk_sent(fake_openai: FakeOpenAI, gpt: openai.OpenAI) -> None:
    fake_openai.queue(text="Hello", usage={"prompt_tokens": 11, "completion_tokens": 2})

    completion = gpt.chat.completions.create(
        model="gpt-test-1",
        messages=[{"role": "system", "content": "Be brief."}, *USER],
        temperature=0.2,
        max_completion_tokens=50,
    )

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-test-1"
    assert completion.created > 0
    (choice,) = completion.choices
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert (choice.message.role, choice.message.content) == ("assistant", "Hello")
    assert choice.message.tool_calls is None
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 2)
    assert completion.usage.total_tokens == 13

    sent = fake_openai.last_request
    assert (sent.path, sent.endpoint) == ("/v1/chat/completions", "chat/completions")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.api_key == KEY
    assert sent.body["model"] == "gpt-test-1"
    assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent.body["max_completion_tokens"] == 50


def test_openai_default_answer_and_wrong_key(fake_openai: FakeOpenAI, gpt: openai.OpenAI) -> None:
    completion = gpt.chat.completions.create(model="m", messages=USER)
    assert completion.choices[0].message.content == FakeOpenAI().default_text

    with (
        openai.OpenAI(api_key="wrong", base_url=fake_openai.base_url, max_retries=0) as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.chat.completions.create(model="m", messages=USER)
    assert caught.value.code == "invalid_api_key"


def test_openai_stream_with_usage_and_split_tool_arguments(
    fake_openai: FakeOpenAI, gpt: openai.OpenAI
) -> None:
    fake_openai.queue(
        text="Let me compute.",
        tool_calls=[("calculator", ARGS), ("calculator", {"expression": "1"})],
        usage={"prompt_tokens": 1500, "completion_tokens": 30, "cached_tokens": 1024},
    )

    chunks = list(
        gpt.chat.completions.create(
            model="gpt-test-1",
            messages=USER,
            tools=[CALCULATOR_OPENAI],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    text_pieces = [d.content for d in deltas if d.content]
    assert len(text_pieces) > 1
    assert "".join(text_pieces) == "Let me compute."

    calls: dict[int, dict[str, str]] = {}
    fragments: list[str] = []
    for delta in deltas:
        for call in delta.tool_calls or []:
            if call.id is not None:  # the first chunk of a call carries id, type and name
                assert call.type == "function"
                assert call.function.name == "calculator"
                calls[call.index] = {"id": call.id, "arguments": call.function.arguments or ""}
            else:  # later chunks: only the index and an argument fragment
                assert call.function.name is None
                assert call.type is None
                calls[call.index]["arguments"] += call.function.arguments
                fragments.append(call.function.arguments)
    assert sorted(calls) == [0, 1]
    assert json.loads(calls[0]["arguments"]) == ARGS
    assert json.loads(calls[1]["arguments"]) == {"expression": "1"}
    assert calls[0]["id"] != calls[1]["id"]
    assert any(not _is_json(fragment) for fragment in fragments)

    finishing = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["tool_calls"]

    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (1500, 30)
    assert last.usage.total_tokens == 1530
    assert last.usage.prompt_tokens_details.cached_tokens == 1024
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_openai_stream_without_include_usage_has_no_usage_chunk(
    fake_openai: FakeOpenAI, gpt: openai.OpenAI
) -> None:
    fake_openai.queue(text="Cut o", stop_reason="length", chunk_size=2)
    chunks = list(gpt.chat.completions.create(model="m", messages=USER, stream=True))
    assert all(chunk.choices for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Cut o"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_openai_stream_helper_reassembles_tool_calls(
    fake_openai: FakeOpenAI, gpt: openai.OpenAI
) -> None:
    fake_openai.queue(tool_calls=[("calculator", ARGS)])
    with gpt.chat.completions.stream(
        model="m",
        messages=USER,
        tools=[CALCULATOR_OPENAI],
        stream_options={"include_usage": True},
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == ARGS
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None
    assert final.usage.completion_tokens > 0


def test_openai_tool_call_and_cached_usage_non_streaming(
    fake_openai: FakeOpenAI, gpt: openai.OpenAI
) -> None:
    fake_openai.queue(
        tool_calls=[("calculator", {"expression": "2+2"}, "call_abc")],
        usage={"prompt_tokens": 200, "completion_tokens": 9, "cached_tokens": 128},
    )

    completion = gpt.chat.completions.create(model="m", messages=USER, tools=[CALCULATOR_OPENAI])

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert (call.id, call.type, call.function.name) == ("call_abc", "function", "calculator")
    assert isinstance(call.function.arguments, str)
    assert json.loads(call.function.arguments) == {"expression": "2+2"}
    assert completion.usage.prompt_tokens_details.cached_tokens == 128
    assert completion.usage.total_tokens == 209
    assert fake_openai.last_request.body["tools"] == [CALCULATOR_OPENAI]


def test_openai_malformed_tool_arguments_are_sent_verbatim(
    fake_openai: FakeOpenAI, gpt: openai.OpenAI
) -> None:
    fake_openai.queue(tool_calls=[("calculator", '{"expression": "2+')])
    completion = gpt.chat.completions.create(model="m", messages=USER, tools=[CALCULATOR_OPENAI])
    assert completion.choices[0].message.tool_calls[0].function.arguments == '{"expression": "2+'


def test_openai_rate_limit(fake_openai: FakeOpenAI, gpt: openai.OpenAI) -> None:
    fake_openai.queue_error(429, retry_after=2.5)
    with pytest.raises(openai.RateLimitError) as caught:
        gpt.chat.completions.create(model="m", messages=USER)
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "2.5"
    assert error.code == "rate_limit_exceeded"
    assert error.body["message"]  # the SDK keeps the inner `error` object as `body`
    assert error.request_id
    assert error.request_id.startswith("req_")


def test_openai_server_error(fake_openai: FakeOpenAI, gpt: openai.OpenAI) -> None:
    fake_openai.queue_error(500)
    with pytest.raises(openai.InternalServerError) as caught:
        gpt.chat.completions.create(model="m", messages=USER)
    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"


def test_openai_timeout(fake_openai: FakeOpenAI, gpt: openai.OpenAI) -> None:
    fake_openai.queue_delay(30)
    with pytest.raises(openai.APITimeoutError):
        gpt.with_options(timeout=0.3).chat.completions.create(model="m", messages=USER)


def test_openai_timeout_between_stream_chunks(fake_openai: FakeOpenAI, gpt: openai.OpenAI) -> None:
    fake_openai.queue(text="slow words here", chunk_delay=30)
    with pytest.raises(openai.APITimeoutError):
        list(
            gpt.with_options(timeout=0.3).chat.completions.create(
                model="m", messages=USER, stream=True
            )
        )


def test_openai_malformed_json(fake_openai: FakeOpenAI, gpt: openai.OpenAI) -> None:
    fake_openai.queue_malformed()
    with pytest.raises(json.JSONDecodeError):
        gpt.chat.completions.create(model="m", messages=USER)

    fake_openai.queue_malformed()
    with pytest.raises(json.JSONDecodeError):
        list(gpt.chat.completions.create(model="m", messages=USER, stream=True))


def test_openai_error_inside_a_stream(fake_openai: FakeOpenAI, gpt: openai.OpenAI) -> None:
    fake_openai.queue_stream_error("Partial", message="The server had an error")
    with pytest.raises(openai.APIError) as caught:
        list(gpt.chat.completions.create(model="m", messages=USER, stream=True))
    assert not isinstance(caught.value, openai.APIStatusError)
    assert caught.value.message == "The server had an error"


def test_openai_strict_rejects_unanswered_tool_calls(
    fake_openai: FakeOpenAI, gpt: openai.OpenAI
) -> None:
    call: Any = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "calculator", "arguments": "{}"},
    }
    with pytest.raises(openai.BadRequestError, match="tool_call_id"):
        gpt.chat.completions.create(
            model="m",
            messages=[
                *USER,
                {"role": "assistant", "tool_calls": [call]},
                {"role": "user", "content": "well?"},
            ],
        )
    with pytest.raises(openai.BadRequestError, match="role 'tool'"):
        gpt.chat.completions.create(
            model="m",
            messages=[*USER, {"role": "tool", "tool_call_id": "nope", "content": "4"}],
        )
    gpt.chat.completions.create(
        model="m",
        messages=[
            *USER,
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "4"},
        ],
    )


# ---------------------------------------------------------------------------------------------
# OpenAI embeddings
# ---------------------------------------------------------------------------------------------


def test_embeddings_default_sdk_path_is_base64_and_decodes_to_floats(
    fake_openai: FakeOpenAI, gpt: openai.OpenAI
) -> None:
    result = gpt.embeddings.create(
        model="text-embedding-3-small", input=["refund policy", "shipping times"], dimensions=384
    )

    # the SDK asked for base64 on its own and decoded it
    assert fake_openai.last_request.body["encoding_format"] == "base64"
    assert fake_openai.last_request.body["dimensions"] == 384
    assert result.object == "list"
    assert result.model == "text-embedding-3-small"
    assert [item.index for item in result.data] == [0, 1]
    vector = result.data[0].embedding
    assert len(vector) == 384
    assert all(isinstance(v, float) for v in vector)
    assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-5)
    assert vector == pytest.approx(embedding_for("refund policy", 384), abs=1e-6)
    assert result.usage.prompt_tokens == result.usage.total_tokens > 0


def test_embeddings_float_format_and_explicit_base64(
    fake_openai: FakeOpenAI, gpt: openai.OpenAI
) -> None:
    as_floats = gpt.embeddings.create(
        model="e", input="refund policy", dimensions=384, encoding_format="float"
    )
    floats = as_floats.data[0].embedding
    assert len(floats) == 384
    assert floats == embedding_for("refund policy", 384)  # deterministic, exact as JSON

    as_base64 = gpt.embeddings.create(
        model="e", input="refund policy", dimensions=384, encoding_format="base64"
    )
    raw = as_base64.data[0].embedding
    assert isinstance(raw, str)  # explicitly asked for: the SDK leaves it encoded
    decoded = struct.unpack("<384f", base64.b64decode(raw))
    assert list(decoded) == pytest.approx(floats, abs=1e-6)


def test_embeddings_dimensions_and_similarity(gpt: openai.OpenAI) -> None:
    default = gpt.embeddings.create(model="e", input="hello", encoding_format="float")
    assert len(default.data[0].embedding) == 384
    small = gpt.embeddings.create(model="e", input="hello", dimensions=8, encoding_format="float")
    assert len(small.data[0].embedding) == 8

    query, near, far = (
        gpt.embeddings.create(model="e", input=text, encoding_format="float").data[0].embedding
        for text in ("what is the refund policy", "our refund policy for orders", "cat pictures")
    )
    assert _cosine(query, near) > _cosine(query, far)


def test_queued_chat_replies_are_not_eaten_by_embeddings(
    fake_openai: FakeOpenAI, gpt: openai.OpenAI
) -> None:
    fake_openai.queue(text="for the chat")
    gpt.embeddings.create(model="e", input="context lookup")
    completion = gpt.chat.completions.create(model="m", messages=USER)
    assert completion.choices[0].message.content == "for the chat"

    fake_openai.queue_error(429, endpoint="embeddings")
    gpt.chat.completions.create(model="m", messages=USER)  # not affected
    with pytest.raises(openai.RateLimitError):
        gpt.embeddings.create(model="e", input="x")
    assert [r.endpoint for r in fake_openai.requests] == [
        "embeddings",
        "chat/completions",
        "chat/completions",
        "embeddings",
    ]


# ---------------------------------------------------------------------------------------------
# Async clients
# ---------------------------------------------------------------------------------------------


def test_async_clients_stream_too(fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI) -> None:
    fake_anthropic.queue(text="async claude", tool_calls=[("calculator", ARGS)])
    fake_openai.queue(text="async gpt", tool_calls=[("calculator", ARGS)])

    async def run() -> tuple[anthropic.types.Message, str, str]:
        async with (
            anthropic.AsyncAnthropic(
                api_key=KEY, base_url=fake_anthropic.base_url, max_retries=0
            ) as claude,
            openai.AsyncOpenAI(api_key=KEY, base_url=fake_openai.base_url, max_retries=0) as gpt,
        ):
            async with claude.messages.stream(model="m", max_tokens=50, messages=USER) as stream:
                message = await stream.get_final_message()
            text, arguments = "", ""
            async for chunk in await gpt.chat.completions.create(
                model="m", messages=USER, stream=True
            ):
                delta = chunk.choices[0].delta
                text += delta.content or ""
                arguments += "".join(c.function.arguments or "" for c in delta.tool_calls or [])
            return message, text, arguments

    message, text, arguments = asyncio.run(run())
    assert message.content[0].text == "async claude"
    assert message.content[1].input == ARGS
    assert text == "async gpt"
    assert json.loads(arguments) == ARGS


# ---------------------------------------------------------------------------------------------
# The server itself
# ---------------------------------------------------------------------------------------------


def test_fake_stops_cleanly_even_with_a_request_still_sleeping() -> None:
    fake = FakeOpenAI()
    with fake, openai.OpenAI(api_key=KEY, base_url=fake.base_url, max_retries=0) as client:
        base_url = fake.base_url
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        fake.queue_delay(60)
        with pytest.raises(openai.APITimeoutError):
            client.with_options(timeout=0.2).chat.completions.create(model="m", messages=USER)
        client.chat.completions.create(model="m", messages=USER)  # keep-alive connection open
    assert not fake.running
    alive = [t.name for t in threading.enumerate()]
    assert not any(name.startswith("FakeOpenAI") for name in alive)
    assert not any("process_request_thread" in name for name in alive)
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(base_url + "/models", timeout=1)


def test_unknown_path_is_a_404_in_the_api_envelope(fake_openai: FakeOpenAI) -> None:
    response = httpx2.post(
        fake_openai.base_url + "/responses", json={}, headers={"Authorization": "Bearer x"}
    )
    assert response.status_code == 404
    assert "error" in response.json()


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _cosine(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def test_openai_compatible_server_that_ignores_include_usage() -> None:
    with (
        FakeOpenAI(stream_usage=False) as fake,
        openai.OpenAI(api_key=KEY, base_url=fake.base_url, max_retries=0) as client,
    ):
        fake.queue(text="No counts here.")
        chunks = list(
            client.chat.completions.create(
                model="m", messages=USER, stream=True, stream_options={"include_usage": True}
            )
        )
    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_a_cut_stream_ends_after_its_text_with_no_stop_reason(kind: str) -> None:
    if kind == "anthropic":
        with (
            FakeAnthropic() as fake,
            anthropic.Anthropic(api_key=KEY, base_url=fake.base_url, max_retries=0) as claude,
        ):
            fake.queue_stream_cut("Half an", usage={"input_tokens": 12})
            events = list(
                claude.messages.create(model="m", max_tokens=10, messages=USER, stream=True)
            )
        types = [e.type for e in events]
        assert types[0] == "message_start"
        assert events[0].message.usage.input_tokens == 12
        assert "message_delta" not in types
        assert "message_stop" not in types
        assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == (
            "Half an"
        )
        return
    with (
        FakeOpenAI() as fake_openai,
        openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url, max_retries=0) as gpt,
    ):
        fake_openai.queue_stream_cut("Half an")
        chunks = list(gpt.chat.completions.create(model="m", messages=USER, stream=True))
    assert all(c.choices[0].finish_reason is None for c in chunks if c.choices)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Half an"
