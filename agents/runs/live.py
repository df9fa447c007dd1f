"""The live side of a run of a conversation (an A2A context, decision 125): while the worker
answers, its text is published as it is written, so the A2A endpoint can relay it.

Every message to the run's channel-layer group is one of
`{"type": "run.delta", "seq", "text"}` (a piece of the answer, numbered by its position in the
run's Redis buffer) and `{"type": "run.status", "status"}` (the worker claimed the run, or
saved its outcome). The buffer lets a listener that joins late catch up: join the group first,
then read the run and its buffer, then drop any piece whose `seq` was in the buffer. The saved
run is the truth: what was streamed may differ (an output-schema repair round, a guardrail).

Only runs of a conversation publish (other runs have no listener, and the model is then called
without streaming, as before)."""

from __future__ import annotations

import asyncio
import json
import logging
from types import TracebackType
from typing import Any, Self

import redis
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings

from agents.models import AgentRun
from agents.providers.base import TextDelta
from agents.tools.loop import LoopEvent

logger = logging.getLogger(__name__)

# How long a run's pieces are kept for late listeners.
STREAM_TTL_SECONDS = 15 * 60
DELTA = "run.delta"
STATUS = "run.status"


def _created(run: AgentRun) -> int:
    """Keyed by the run's creation time too: ids start again in a re-created workspace."""
    return int(run.created_at.timestamp() * 1_000_000)


def run_group(schema_name: str, run: AgentRun) -> str:
    """The run's group, prefixed with the schema (group names are global in Redis)."""
    return f"{schema_name}.run.{run.pk}.{_created(run)}"


def _buffer_key(schema_name: str, run: AgentRun) -> str:
    prefix: str = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    return f"{prefix}:run:{schema_name}:{run.pk}:{_created(run)}"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def layer() -> BaseChannelLayer:
    found = get_channel_layer()
    if found is None:
        raise RuntimeError("Streaming runs need a channel layer (CHANNEL_LAYERS).")
    return found


def buffered(schema_name: str, run: AgentRun) -> list[str]:
    """The pieces of the run's answer published so far (piece n has `seq` n + 1)."""
    client = _redis()
    try:
        records = client.lrange(_buffer_key(schema_name, run), 0, -1)
    finally:
        client.close()
    return [str(json.loads(raw)["text"]) for raw in records]


class RunPublisher:
    """Publishes one run's text and status changes from the (synchronous) worker. One
    private event loop for the whole run keeps one channel-layer connection. Best effort: a
    Redis hiccup costs the listener a piece (the saved run is complete), never the answer."""

    def __init__(self, *, schema_name: str, run: AgentRun) -> None:
        self.group = run_group(schema_name, run)
        self.key = _buffer_key(schema_name, run)
        self.run_id = run.pk
        self.redis = _redis()
        self.loop = asyncio.new_event_loop()
        self.layer = layer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.redis.close()
        self.loop.close()  # channels_redis closes its connections with the loop

    def on_event(self, event: LoopEvent) -> None:
        """The `on_event` callback of `answer_with_version`: text only (tool steps are not
        part of an A2A answer)."""
        if not isinstance(event, TextDelta) or not event.text:
            return
        try:
            pipe = self.redis.pipeline()
            pipe.rpush(self.key, json.dumps({"text": event.text}))
            pipe.expire(self.key, STREAM_TTL_SECONDS)
            seq, _ = pipe.execute()
            self._send({"type": DELTA, "seq": int(seq), "text": event.text})
        except (redis.RedisError, OSError):
            logger.warning("run %s: could not publish a piece", self.run_id, exc_info=True)

    def status(self, status: str) -> None:
        """The run was claimed or finished: listeners read it again from the database."""
        try:
            self._send({"type": STATUS, "status": status})
        except (redis.RedisError, OSError):
            logger.warning("run %s: could not publish its status", self.run_id, exc_info=True)

    def _send(self, message: dict[str, Any]) -> None:
        self.loop.run_until_complete(self.layer.group_send(self.group, message))
