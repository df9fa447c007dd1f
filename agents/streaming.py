"""What the two live answers share: a chat turn (agents/chat/live.py) and a run of an A2A
context (agents/runs/live.py) are each published from the synchronous worker as pieces, each
piece appended to a Redis list (so a listener that joins late can catch up) and sent to a
channel-layer group numbered by its position in that list.

`BufferedPublisher` does the Redis and channel-layer side of that once: one private event loop
for the whole answer keeps one channel-layer connection instead of one per piece, and
publishing is best effort (a Redis hiccup costs the listener a piece, never the saved answer,
which is the truth both live views end with)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import redis
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

# How long an answer's pieces are kept for late listeners.
STREAM_TTL_SECONDS = 15 * 60


def buffer_key(kind: str, schema_name: str, pk: int, created_at: datetime) -> str:
    """The Redis list of one answer's pieces. Keyed by the row's creation time too: ids start
    again in a workspace re-created under the same schema name."""
    prefix: str = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    return f"{prefix}:{kind}:{schema_name}:{pk}:{int(created_at.timestamp() * 1_000_000)}"


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def channel_layer() -> BaseChannelLayer:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("Live answers need a channel layer (CHANNEL_LAYERS).")
    return layer


def buffered_records(key: str) -> list[dict[str, Any]]:
    """The pieces published so far, in order (piece n has `seq` n + 1)."""
    client = redis_client()
    try:
        return [json.loads(raw) for raw in client.lrange(key, 0, -1)]
    finally:
        client.close()


class BufferedPublisher:
    """Publishes one answer's pieces to `group`, each also kept in the list `key`."""

    def __init__(self, *, group: str, key: str, name: str) -> None:
        self.group = group
        self.key = key
        self.name = name  # for the log: "turn 12", "run 40"
        self.redis = redis_client()
        self.loop = asyncio.new_event_loop()
        self.layer = channel_layer()

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

    def publish(self, record: dict[str, Any], message: Callable[[int], dict[str, Any]]) -> None:
        """Append `record` to the buffer, then send `message(seq)` to the group."""
        try:
            pipe = self.redis.pipeline()
            pipe.rpush(self.key, json.dumps(record))
            pipe.expire(self.key, STREAM_TTL_SECONDS)
            seq, _ = pipe.execute()
            self._send(message(int(seq)))
        except (redis.RedisError, OSError):
            logger.warning("%s: could not publish a piece", self.name, exc_info=True)

    def send(self, message: dict[str, Any]) -> None:
        """Send an unbuffered message (a status change, the saved answer)."""
        try:
            self._send(message)
        except (redis.RedisError, OSError):
            logger.warning("%s: could not publish %s", self.name, message["type"], exc_info=True)

    def _send(self, message: dict[str, Any]) -> None:
        self.loop.run_until_complete(self.layer.group_send(self.group, message))
