"""A loopback fake of OpenAI's Chat Completions and Embeddings APIs, for the real `openai`
SDK.

    with FakeOpenAI() as fake:
        client = openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0)
        fake.queue(text="Hello", usage={"prompt_tokens": 12, "completion_tokens": 3})
        client.chat.completions.create(model="gpt-x", messages=[...])
        fake.last_request.headers["authorization"]  # "Bearer sk-test"

Endpoints: `POST /v1/chat/completions` (JSON, or SSE when the body has `"stream": true`)
and `POST /v1/embeddings`. `usage` given to `queue` uses the API's own keys:
`prompt_tokens` (ALL input, cached included), `completion_tokens`, `total_tokens` (computed
when missing) and the shortcuts `cached_tokens` (-> prompt_tokens_details.cached_tokens) and
`reasoning_tokens` (-> completion_tokens_details.reasoning_tokens); missing ones are
estimated from the request / reply text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import struct
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
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

DEFAULT_TEXT = "This is a fake reply from FakeOpenAI."
DEFAULT_DIMENSIONS = 384

# status -> (error.type, error.code, error.message) as the real API sends them
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


class FakeOpenAI(FakeServer):
    """Fake of https://api.openai.com/v1. `base_url` is `http://127.0.0.1:PORT/v1`."""

    routes: ClassVar[dict[str, str]] = {
        "/v1/chat/completions": "chat/completions",
        "/v1/embeddings": "embeddings",
    }
    chat_endpoint: ClassVar[str] = "chat/completions"
    base_path: ClassVar[str] = "/v1"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        strict: bool = True,
        default_text: str = DEFAULT_TEXT,
        embedding_dimensions: int = DEFAULT_DIMENSIONS,
        stream_usage: bool = True,
    ) -> None:
        """`default_text`: the answer when nothing is queued. `embedding_dimensions`: the
        vector size when the request has no `dimensions`. `stream_usage=False`: ignore
        `stream_options.include_usage` and never send a usage chunk, as many
        OpenAI-compatible servers (older Ollama, LM Studio, llama.cpp builds) do.

        `strict` rejects with a 400 what the real API rejects: missing model / messages, an
        unknown role, temperature outside [0, 2], tools that are not functions with a name,
        an assistant `tool_calls` message not followed by a `tool` message for each call id,
        a `tool` message whose `tool_call_id` answers no preceding call; for embeddings an
        empty input or a non-positive `dimensions`."""
        super().__init__(api_key=api_key, strict=strict)
        self.default_text = default_text
        self.embedding_dimensions = embedding_dimensions
        self.stream_usage = stream_usage

    # -- protocol -------------------------------------------------------------------------

    def key_of(self, headers: Mapping[str, str]) -> str | None:
        """`Authorization: Bearer KEY`."""
        value = headers.get("authorization")
        if value and value.startswith("Bearer ") and value[len("Bearer ") :].strip():
            return value[len("Bearer ") :]
        return None

    def auth_error(self, request: RecordedRequest) -> str | None:
        if not request.api_key:
            return (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        if self.api_key is not None and request.api_key != self.api_key:
            return "Incorrect API key provided."
        return None

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
        default_type, default_code, default_message = _ERRORS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error")
        )
        payload = {
            "error": {
                "message": message or default_message,
                "type": error_type or default_type,
                "param": None,
                "code": code if code is not None else default_code,
            }
        }
        all_headers = self._headers()
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
                code=item.code,
                headers=headers,
            )
            return
        if endpoint == "embeddings":
            self._embeddings(body, item, out)
            return
        problem = self._invalid_chat(body) if self.strict else None
        if problem is not None:
            self.send_error(out, 400, message=problem)
            return
        streaming = body.get("stream") is True
        if isinstance(item, Malformed):
            if streaming:
                out.start_stream(headers=self._headers())
                first = self._chunk(
                    body, _CompletionIds(self), {"role": "assistant", "content": ""}
                )
                out.stream(_data(first))
                out.stream(b'data: {"id": "chatcmpl-broken", "choices": [{"delta": {"cont\n\n')
            else:
                out.send_bytes(200, item.body, headers=self._headers())
            return
        if isinstance(item, StreamError):
            message = item.message or _ERRORS[500][2]
            if not streaming:
                self.send_error(out, 500, message=message, error_type=item.error_type)
                return
            self._stream(
                body, Reply(text=item.text), out, error=(item.error_type, message), cut=item.cut
            )
            return
        reply = item if isinstance(item, Reply) else Reply(text=self.default_text)
        if streaming:
            self._stream(body, reply, out)
        else:
            out.send_json(200, self._completion(body, reply), headers=self._headers())

    # -- chat completions -----------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"x-request-id": f"req_fake{self.next_id():06d}", "openai-version": "2020-10-01"}

    def _calls(self, reply: Reply) -> list[tuple[str, str, str]]:
        """(id, name, arguments JSON text) of each scripted tool call."""
        calls = []
        for spec in reply.tool_calls:
            call_id, name, arguments = unpack_tool_call(spec, self._call_id)
            calls.append((call_id, name, tool_arguments(arguments)))
        return calls

    def _call_id(self) -> str:
        return f"call_fake{self.next_id():015d}"

    def _usage(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        given = dict(reply.usage or {})
        estimated_prompt = count_tokens(
            text_of(body.get("messages", [])) + " " + text_of(body.get("tools", []))
        )
        estimated_completion = count_tokens(reply.text or "") + sum(
            count_tokens(tool_arguments(spec[1])) for spec in reply.tool_calls
        )
        prompt = given.get("prompt_tokens", max(1, estimated_prompt))
        completion = given.get("completion_tokens", max(1, estimated_completion))
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": given.get("total_tokens", prompt + completion),
            "prompt_tokens_details": {
                "cached_tokens": given.get("cached_tokens", 0),
                "audio_tokens": 0,
            },
            "completion_tokens_details": {
                "reasoning_tokens": given.get("reasoning_tokens", 0),
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _finish_reason(self, reply: Reply) -> str:
        if reply.stop_reason:
            return reply.stop_reason
        return "tool_calls" if reply.tool_calls else "stop"

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text if (reply.text or not reply.tool_calls) else None,
            "refusal": None,
            "annotations": [],
        }
        if not reply.tool_calls and message["content"] is None:
            message["content"] = ""
        calls = self._calls(reply)
        if calls:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
                for call_id, name, arguments in calls
            ]
        return {
            "id": f"chatcmpl-fake{self.next_id():020d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or body.get("model") or "gpt-fake",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self._finish_reason(reply),
                }
            ],
            "usage": self._usage(body, reply),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }

    def _chunk(
        self,
        body: dict[str, Any],
        ids: _CompletionIds,
        delta: dict[str, Any] | None,
        *,
        finish_reason: str | None = None,
        usage: dict[str, Any] | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": ids.completion_id,
            "object": "chat.completion.chunk",
            "created": ids.created,
            "model": model or body.get("model") or "gpt-fake",
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
            "choices": []
            if delta is None
            else [
                {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
        }
        if self.stream_usage and _include_usage(body):
            chunk["usage"] = usage  # null on every chunk but the last, like the real API
        return chunk

    def _stream(
        self,
        body: dict[str, Any],
        reply: Reply,
        out: Exchange,
        *,
        error: tuple[str | None, str] | None = None,
        cut: bool = False,
    ) -> None:
        """The real chunk sequence: a first chunk with the role, content deltas, tool call
        deltas (the first per call carries index/id/type/name and empty arguments, the rest
        only index and an argument fragment), a chunk with `finish_reason`, a usage chunk with
        empty `choices` when `stream_options.include_usage`, then `data: [DONE]`. With
        `error` an error chunk follows the content; with `cut` the stream ends there."""
        pause = reply.chunk_delay
        ids = _CompletionIds(self)
        model = reply.model
        calls = self._calls(reply)
        out.start_stream(headers=self._headers())

        def send(delta: dict[str, Any] | None, **extra: Any) -> None:
            out.stream(_data(self._chunk(body, ids, delta, model=model, **extra)), pause=pause)

        text = reply.text or ""
        first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
        if calls and not text:
            first["content"] = None
        send(first)
        for piece in split_text(text, reply.chunk_size):
            send({"content": piece})
        if cut:
            return
        if error is not None:
            error_type, message = error
            out.stream(
                _data(
                    {
                        "error": {
                            "message": message,
                            "type": error_type or "server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                )
            )
            return
        for index, (call_id, name, arguments) in enumerate(calls):
            send(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
            for fragment in split_json(arguments):
                send({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
        send({}, finish_reason=self._finish_reason(reply))
        if self.stream_usage and _include_usage(body):
            send(None, usage=self._usage(body, reply))
        out.stream(b"data: [DONE]\n\n")

    # -- embeddings -----------------------------------------------------------------------

    def _embeddings(self, body: dict[str, Any], item: Scripted | None, out: Exchange) -> None:
        if isinstance(item, Malformed):
            out.send_bytes(200, item.body, headers=self._headers())
            return
        raw_input = body.get("input")
        inputs: list[Any]
        if isinstance(raw_input, str):
            inputs = [raw_input]
        elif (
            isinstance(raw_input, list) and raw_input and all(isinstance(v, int) for v in raw_input)
        ):
            inputs = [raw_input]  # one text as token ids
        elif isinstance(raw_input, list):
            inputs = list(raw_input)
        else:
            inputs = []
        dimensions = body.get("dimensions", self.embedding_dimensions)
        if self.strict:
            if not isinstance(body.get("model"), str) or not body["model"]:
                self.send_error(out, 400, message="you must provide a model parameter")
                return
            if not inputs or any(v == "" for v in inputs):
                self.send_error(out, 400, message="'input' must not be empty.")
                return
            if not isinstance(dimensions, int) or dimensions < 1:
                self.send_error(out, 400, message="'dimensions' must be a positive integer.")
                return
        encoding = body.get("encoding_format", "float")
        data = []
        tokens = 0
        for index, value in enumerate(inputs):
            text = value if isinstance(value, str) else " ".join(str(t) for t in value)
            tokens += max(1, count_tokens(text))
            vector = embedding_for(text, int(dimensions))
            encoded: Any = vector
            if encoding == "base64":
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        out.send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model") or "text-embedding-fake",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            headers=self._headers(),
        )

    # -- validation -----------------------------------------------------------------------

    def _invalid_chat(self, body: dict[str, Any]) -> str | None:
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "you must provide a model parameter"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "[] is too short - 'messages'"
        temperature = body.get("temperature")
        if temperature is not None and not (0 <= temperature <= 2):
            return f"{temperature} is greater than the maximum of 2 - 'temperature'"
        return _invalid_tools(body.get("tools") or []) or _invalid_messages(messages)


class _CompletionIds:
    """The id and timestamp every chunk of one streamed completion repeats."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.completion_id = f"chatcmpl-fake{fake.next_id():020d}"
        self.created = int(time.time())


def _invalid_tools(tools: list[Any]) -> str | None:
    for number, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function":
            return f"Invalid value for 'tools[{number}].type': expected 'function'."
        if not isinstance(function, dict) or not re.match(
            r"^[a-zA-Z0-9_-]{1,64}$", str(function.get("name", ""))
        ):
            return f"Invalid 'tools[{number}].function.name'."
    return None


def _invalid_messages(messages: list[Any]) -> str | None:
    open_calls: set[str] = set()
    for number, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            return f"Invalid value for 'messages[{number}].role'."
        role = message["role"]
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_calls:
                return (
                    f"Invalid parameter: messages with role 'tool' must be a response to a "
                    f"preceeding message with 'tool_calls' ('messages[{number}]')."
                )
            open_calls.discard(call_id)
            continue
        if open_calls:
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not "
                f"have response messages: {', '.join(sorted(open_calls))}"
            )
        if role == "assistant":
            for call in message.get("tool_calls") or []:
                if not isinstance(call, dict) or not call.get("id"):
                    return f"Missing 'messages[{number}].tool_calls[].id'."
                open_calls.add(str(call["id"]))
    if open_calls:
        return (
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not "
            f"have response messages: {', '.join(sorted(open_calls))}"
        )
    return None


def embedding_for(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The fake's deterministic unit-length vector for `text`: the normalised sum of one
    pseudo-random vector per lower-cased word, so texts sharing words are closer (higher
    cosine similarity) than unrelated ones. The same in every process."""
    words = re.findall(r"\w+", text.lower()) or [text]
    total = [0.0] * dimensions
    for word in words:
        for i, value in enumerate(_word_vector(word, dimensions)):
            total[i] += value
    norm = math.sqrt(sum(v * v for v in total)) or 1.0
    return [v / norm for v in total]


@lru_cache(maxsize=4096)
def _word_vector(word: str, dimensions: int) -> tuple[float, ...]:
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    return tuple(rng.gauss(0.0, 1.0) for _ in range(dimensions))


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def _data(chunk: Mapping[str, Any] | Sequence[Any]) -> bytes:
    return f"data: {json.dumps(chunk)}\n\n".encode()


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
