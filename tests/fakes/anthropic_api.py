"""A loopback fake of Anthropic's Messages API, for the real `anthropic` SDK.

    with FakeAnthropic() as fake:
        client = anthropic.Anthropic(api_key="sk-ant-test", base_url=fake.base_url,
                                     max_retries=0)
        fake.queue(text="Hello", usage={"input_tokens": 12, "output_tokens": 3})
        client.messages.create(model="claude-x", max_tokens=100, messages=[...])
        fake.last_request.body["model"], fake.last_request.headers["x-api-key"]

Endpoints: `POST /v1/messages` (JSON, or SSE when the body has `"stream": true`) and
`POST /v1/messages/count_tokens`. `usage` given to `queue` uses the API's own keys:
`input_tokens` (uncached input), `output_tokens`, `cache_read_input_tokens`,
`cache_creation_input_tokens`; missing ones are estimated from the request / reply text
(cache ones default to 0).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from tests.fakes.server import (
    ErrorReply,
    Exchange,
    FakeServer,
    Malformed,
    RecordedRequest,
    Reply,
    Scripted,
    StreamError,
    count_tokens,
    split_json,
    split_text,
    text_of,
    tool_arguments,
    unpack_tool_call,
)

DEFAULT_TEXT = "This is a fake reply from FakeAnthropic."

# status -> (error.type, error.message) as the real API sends them
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low."),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}
_STATUS_OF_TYPE = {error_type: status for status, (error_type, _) in _ERRORS.items()}

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


class FakeAnthropic(FakeServer):
    """Fake of https://api.anthropic.com. `base_url` is `http://127.0.0.1:PORT` (the SDK
    appends `/v1/messages`)."""

    routes: ClassVar[dict[str, str]] = {
        "/v1/messages": "messages",
        "/v1/messages/count_tokens": "count_tokens",
    }
    chat_endpoint: ClassVar[str] = "messages"
    base_path: ClassVar[str] = ""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        strict: bool = True,
        default_text: str = DEFAULT_TEXT,
        full_delta_usage: bool = False,
    ) -> None:
        """`default_text`: the answer when nothing is queued. `full_delta_usage`: the
        streaming `message_delta` event repeats input and cache token counts (as newer API
        versions do) instead of carrying only `output_tokens`.

        `strict` rejects with a 400 what the real API rejects: missing model / max_tokens
        / messages, a role other than user/assistant (system goes in `system`), temperature
        outside [0, 1], bad tool names or schemas, tool_use blocks not answered by
        tool_result blocks in the next user message, and tool_results without a tool_use."""
        super().__init__(api_key=api_key, strict=strict)
        self.default_text = default_text
        self.full_delta_usage = full_delta_usage

    # -- protocol -------------------------------------------------------------------------

    def key_of(self, headers: Mapping[str, str]) -> str | None:
        """`x-api-key`, which the API documents, or `Authorization: Bearer`, which is what
        the anthropic SDK 2.x actually sends for `api_key=`."""
        if headers.get("x-api-key"):
            return headers["x-api-key"]
        return _bearer(headers.get("authorization"))

    def send_error(
        self,
        out: Exchange,
        status: int,
        *,
        message: str | None = None,
        error_type: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        default_type, default_message = _ERRORS.get(
            status, ("api_error" if status >= 500 else "invalid_request_error", "Error")
        )
        request_id = f"req_fake{self.next_id():06d}"
        payload = {
            "type": "error",
            "error": {"type": error_type or default_type, "message": message or default_message},
            "request_id": request_id,
        }
        all_headers = {"request-id": request_id}
        all_headers.update(headers or {})
        out.send_json(status, payload, headers=all_headers)

    def respond(
        self, endpoint: str, request: RecordedRequest, item: Scripted | None, out: Exchange
    ) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        if isinstance(item, ErrorReply):
            headers = dict(item.headers)
            if item.retry_after is not None:
                headers["retry-after"] = _seconds(item.retry_after)
            self.send_error(
                out,
                item.status,
                message=item.message,
                error_type=item.error_type,
                headers=headers,
            )
            return
        if endpoint == "count_tokens":
            self._count_tokens(body, item, out)
            return
        problem = self._invalid(body) if self.strict else None
        if problem is not None:
            self.send_error(out, 400, message=problem)
            return
        streaming = body.get("stream") is True
        if isinstance(item, Malformed):
            if streaming:
                out.start_stream(headers={"request-id": f"req_fake{self.next_id():06d}"})
                reply = Reply(text="")
                out.stream(_sse("message_start", self._start_event(body, reply)))
                out.stream(b'event: content_block_start\ndata: {"type": "content_blo\n\n')
            else:
                out.send_bytes(200, item.body)
            return
        if isinstance(item, StreamError):
            error_type = item.error_type or "overloaded_error"
            message = item.message or _ERRORS.get(_STATUS_OF_TYPE.get(error_type, 500), ("", ""))[1]
            if not streaming:
                status = _STATUS_OF_TYPE.get(error_type, 500)
                self.send_error(out, status, message=message, error_type=error_type)
                return
            reply = Reply(text=item.text, usage=item.usage)
            self._stream(body, reply, out, error=(error_type, message), cut=item.cut)
            return
        reply = item if isinstance(item, Reply) else Reply(text=self.default_text)
        if streaming:
            self._stream(body, reply, out)
        else:
            out.send_json(200, self._message(body, reply), headers=self._headers())

    # -- answers --------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"request-id": f"req_fake{self.next_id():06d}"}

    def _blocks(self, reply: Reply) -> list[tuple[dict[str, Any], str]]:
        """The content blocks of `reply`, each with its streamed payload (the text, or the
        tool input's JSON text)."""
        blocks: list[tuple[dict[str, Any], str]] = []
        if reply.text or not reply.tool_calls:
            blocks.append(({"type": "text", "text": reply.text or ""}, reply.text or ""))
        for spec in reply.tool_calls:
            call_id, name, arguments = unpack_tool_call(spec, self._tool_id)
            raw = tool_arguments(arguments)
            try:
                tool_input: Any = json.loads(raw)
            except ValueError:
                tool_input = raw  # not an object: only a broken API would send it
            block = {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}
            blocks.append((block, raw))
        return blocks

    def _tool_id(self) -> str:
        return f"toolu_fake{self.next_id():014d}"

    def _usage(self, body: dict[str, Any], reply: Reply) -> dict[str, int]:
        given = dict(reply.usage or {})
        estimated_input = count_tokens(
            text_of(body.get("system", ""))
            + " "
            + text_of(body.get("messages", []))
            + " "
            + text_of(body.get("tools", []))
        )
        estimated_output = count_tokens(reply.text or "") + sum(
            count_tokens(tool_arguments(spec[1])) for spec in reply.tool_calls
        )
        return {
            "input_tokens": given.get("input_tokens", max(1, estimated_input)),
            "cache_creation_input_tokens": given.get("cache_creation_input_tokens", 0),
            "cache_read_input_tokens": given.get("cache_read_input_tokens", 0),
            "output_tokens": given.get("output_tokens", max(1, estimated_output)),
        }

    def _stop_reason(self, reply: Reply) -> str:
        if reply.stop_reason:
            return reply.stop_reason
        return "tool_use" if reply.tool_calls else "end_turn"

    def _message(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        usage = self._usage(body, reply)
        return {
            "id": f"msg_fake{self.next_id():014d}",
            "type": "message",
            "role": "assistant",
            "model": reply.model or body.get("model") or "claude-fake",
            "content": [block for block, _ in self._blocks(reply)],
            "stop_reason": self._stop_reason(reply),
            "stop_sequence": reply.stop_sequence,
            "usage": {**usage, "service_tier": "standard"},
        }

    def _start_event(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        usage = self._usage(body, reply)
        message: dict[str, Any] = {
            "id": f"msg_fake{self.next_id():014d}",
            "type": "message",
            "role": "assistant",
            "model": reply.model or body.get("model") or "claude-fake",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # like the real API: input and cache counts are final here, output_tokens is not
            "usage": {**usage, "output_tokens": 1, "service_tier": "standard"},
        }
        return {"type": "message_start", "message": message}

    def _stream(
        self,
        body: dict[str, Any],
        reply: Reply,
        out: Exchange,
        *,
        error: tuple[str, str] | None = None,
        cut: bool = False,
    ) -> None:
        """The real event sequence: message_start, ping, then per block content_block_start,
        content_block_delta..., content_block_stop, then message_delta and message_stop. With
        `error`, an `error` event follows the last delta and the stream ends there; with
        `cut`, the stream ends after the last delta with nothing more."""
        pause = reply.chunk_delay
        out.start_stream(headers=self._headers())
        out.stream(_sse("message_start", self._start_event(body, reply)))
        for index, (block, payload) in enumerate(self._blocks(reply)):
            if block["type"] == "text":
                start: dict[str, Any] = {"type": "text", "text": ""}
                deltas = [
                    {"type": "text_delta", "text": piece}
                    for piece in split_text(payload, reply.chunk_size)
                ]
            else:
                start = {**block, "input": {}}
                # the real API opens with an empty fragment, then cuts anywhere
                deltas = [{"type": "input_json_delta", "partial_json": ""}] + [
                    {"type": "input_json_delta", "partial_json": piece}
                    for piece in split_json(payload)
                ]
            out.stream(
                _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                ),
                pause=pause,
            )
            if index == 0:
                out.stream(_sse("ping", {"type": "ping"}))
            for delta in deltas:
                out.stream(
                    _sse(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    ),
                    pause=pause,
                )
            if cut:
                return
            if error is not None:
                error_type, message = error
                out.stream(
                    _sse(
                        "error",
                        {
                            "type": "error",
                            "error": {"type": error_type, "message": message},
                        },
                    )
                )
                return
            out.stream(
                _sse("content_block_stop", {"type": "content_block_stop", "index": index}),
                pause=pause,
            )
        usage = self._usage(body, reply)
        delta_usage = (
            dict(usage) if self.full_delta_usage else {"output_tokens": usage["output_tokens"]}
        )
        out.stream(
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": self._stop_reason(reply),
                        "stop_sequence": reply.stop_sequence,
                    },
                    "usage": delta_usage,
                },
            ),
            pause=pause,
        )
        out.stream(_sse("message_stop", {"type": "message_stop"}), pause=pause)

    def _count_tokens(self, body: dict[str, Any], item: Scripted | None, out: Exchange) -> None:
        if isinstance(item, Malformed):
            out.send_bytes(200, item.body)
            return
        given = item.usage if isinstance(item, Reply) and item.usage else {}
        estimated = count_tokens(
            text_of(body.get("system", ""))
            + " "
            + text_of(body.get("messages", []))
            + " "
            + text_of(body.get("tools", []))
        )
        out.send_json(
            200,
            {"input_tokens": given.get("input_tokens", max(1, estimated))},
            headers=self._headers(),
        )

    # -- validation -----------------------------------------------------------------------

    def _invalid(self, body: dict[str, Any]) -> str | None:
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "model: Field required"
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            return "max_tokens: Field required (a positive integer)"
        temperature = body.get("temperature")
        if temperature is not None and not (0 <= temperature <= 1):
            return "temperature: Input should be less than or equal to 1"
        system = body.get("system")
        if system is not None and not isinstance(system, str | list):
            return "system: Input should be a valid string or a list of text blocks"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        return _invalid_tools(body.get("tools") or []) or _invalid_messages(messages)


def _invalid_tools(tools: list[Any]) -> str | None:
    for number, tool in enumerate(tools):
        if not isinstance(tool, dict):
            return f"tools.{number}: Input should be an object"
        if "type" in tool and tool["type"] != "custom":
            continue  # a server tool (web_search, …): not checked
        if not _TOOL_NAME.match(str(tool.get("name", ""))):
            return f"tools.{number}.name: String should match '{_TOOL_NAME.pattern}'"
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return f"tools.{number}.input_schema: type must be 'object'"
    return None


def _invalid_messages(messages: list[Any]) -> str | None:
    open_calls: set[str] = set()
    for number, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages.{number}: Input should be an object"
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{number}.role: Input should be 'user' or 'assistant'" + (
                " (use the top-level `system` parameter)" if role == "system" else ""
            )
        content = message.get("content")
        if isinstance(content, str):
            blocks: list[Any] = [{"type": "text", "text": content}]
        elif isinstance(content, list):
            blocks = content
        else:
            return f"messages.{number}.content: Input should be a string or a list of blocks"
        results = {
            b.get("tool_use_id")
            for b in blocks
            if isinstance(b, dict) and b.get("type") == "tool_result"
        }
        if open_calls and not open_calls <= results:
            return (
                f"messages.{number}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(sorted(open_calls - results))}. Each "
                "`tool_use` block must have a corresponding `tool_result` block in the "
                "next message."
            )
        stray = results - open_calls
        if stray:
            return (
                f"messages.{number}.content: unexpected `tool_use_id` found in "
                f"`tool_result` blocks: {', '.join(sorted(map(str, stray)))}. Each "
                "`tool_result` block must have a corresponding `tool_use` block in the "
                "previous message."
            )
        for block in blocks:
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                return f"messages.{number}.content: each block needs a `type`"
        open_calls = (
            {
                str(b.get("id"))
                for b in blocks
                if isinstance(b, dict) and b.get("type") == "tool_use"
            }
            if role == "assistant"
            else set()
        )
    return None


def _bearer(value: str | None) -> str | None:
    if value and value.startswith("Bearer ") and value[len("Bearer ") :].strip():
        return value[len("Bearer ") :]
    return None


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
