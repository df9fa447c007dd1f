"""What the recovery sweep needs to find work a dead worker, a lost message or an outage left
behind, without a visibility timeout to wait for (docs/operations.md, "Recovery").

- **Liveness is the executor's database session.** Whoever executes a workflow step or an agent
  run holds a session advisory lock on it for as long as it works (`advisory_key`). PostgreSQL
  frees the lock the moment that session ends, whether the worker exited, was killed with
  SIGKILL, or lost its connection. So a row marked running whose lock nobody holds
  (`held_advisory_keys`) has no executor, and can be sent again at once.
- **Which workspaces to sweep often.** Sending work marks the workspace active in a Redis sorted
  set (`mark_active`, at most once a second per process and workspace); the frequent sweep
  visits the workspaces active in the last hour (`active_schemas`), the minute sweep all of them.
- **Re-sends are throttled** per item (`resend_due`), so a long queue is not flooded with copies.

Every function here degrades quietly when Redis is down (the sweep cannot send anything then).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

ACTIVE_KEY = "recovery:active-schemas"
ACTIVE_FOR_SECONDS = 3600  # the frequent sweep visits workspaces that sent work this recently
_MARK_EVERY_SECONDS = 1.0
_marked: dict[str, float] = {}


def _prefix() -> str:
    return str(settings.CACHES["default"].get("KEY_PREFIX") or "am")


def redis_client() -> redis.Redis:
    return _process_client(settings.REDIS_URL, os.getpid())


@functools.cache
def _process_client(url: str, pid: int) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def advisory_key(*parts: object) -> int:
    """A 64-bit advisory lock key for `parts` (schema first: ids repeat across workspaces)."""
    text = ":".join(str(p) for p in parts)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def advisory_try_lock(key: int) -> bool:
    """Take the session advisory lock `key` on this connection, if nobody holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        return bool(cursor.fetchone()[0])


def advisory_unlock(key: int) -> None:
    """Give back the session advisory lock `key`. A connection that went away took its locks
    with it: nothing to do then."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
    except Exception:
        logger.debug("advisory unlock failed", exc_info=True)


_HELD_SQL = (
    "SELECT ((classid::bigint << 32) | objid::bigint) FROM pg_locks "
    "WHERE locktype = 'advisory' AND objsubid = 1 AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def held_advisory_keys() -> set[int]:
    """The single-key session advisory locks held right now in this database, by anyone."""
    with connection.cursor() as cursor:
        cursor.execute(_HELD_SQL)
        return {int(key) for (key,) in cursor.fetchall()}


def unheld(keys: dict[int, int]) -> list[int]:
    """Of `{item id: advisory key}`, the ids whose lock nobody holds (their executor is gone).
    Read the items first, then call this: an item that finished in between is harmless."""
    if not keys:
        return []
    held = held_advisory_keys()
    return sorted(item for item, key in keys.items() if key not in held)


def mark_active(schema: str) -> None:
    """Note that `schema` sent work now, so the frequent sweep visits it for the next hour."""
    now = time.time()
    if now - _marked.get(schema, 0.0) < _MARK_EVERY_SECONDS:
        return
    _marked[schema] = now
    try:
        redis_client().zadd(f"{_prefix()}:{ACTIVE_KEY}", {schema: now})
    except (redis.RedisError, OSError):
        logger.debug("marking %s active failed", schema, exc_info=True)


def active_schemas(*, within_seconds: float = ACTIVE_FOR_SECONDS) -> list[str] | None:
    """Workspaces that sent work within `within_seconds` (and forget older ones); None when
    Redis lost the list (restarted without its data): then the caller sweeps every workspace
    once, and marks what it re-sends."""
    key = f"{_prefix()}:{ACTIVE_KEY}"
    kept = f"{_prefix()}:{ACTIVE_KEY}:kept"  # no expiry: gone only if Redis lost its data
    now = time.time()
    client = redis_client()
    if client.set(kept, int(now), nx=True):  # it was missing
        return None
    client.zremrangebyscore(key, "-inf", now - within_seconds)
    members = client.zrangebyscore(key, now - within_seconds, "+inf")
    return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)


def resend_due(kind: str, schema: str, ids: Iterable[int], *, every_seconds: int) -> list[int]:
    """Of `ids`, those not re-sent within `every_seconds` (and note them as re-sent now)."""
    ids = list(ids)
    if not ids:
        return []
    client = redis_client()
    with client.pipeline(transaction=False) as pipe:
        for item in ids:
            pipe.set(f"{_prefix()}:recovery:{kind}:{schema}:{item}", 1, nx=True, ex=every_seconds)
        answers = pipe.execute()
    return [item for item, fresh in zip(ids, answers, strict=True) if fresh]


def queue_backlog() -> int | None:
    """How many messages wait in the default task queue (None if the broker did not answer)."""
    from celery import current_app

    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    try:
        with current_app.connection_for_read() as conn:
            return int(conn.default_channel.queue_declare(queue, passive=True).message_count)
    except Exception:  # the broker is down or the queue does not exist yet
        logger.debug("reading the length of queue %s failed", queue, exc_info=True)
        return None


# Celery options for tasks whose state lives in the database: a task that loses the database (a
# restart, a failover) is retried after a backoff instead of being acked as failed, and finds
# its work where the outage left it. 1, 2, 4, 8, 10, 10, … s (with jitter), about ten minutes;
# after that the recovery sweep still re-sends the work once the database is back.
DATABASE_RETRY: dict[str, object] = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 1,
    "retry_backoff_max": 10,
    "retry_jitter": True,
    "max_retries": 60,
}


def require_task_schema(task: Any) -> None:
    """Raise OperationalError (so DATABASE_RETRY retries) when the task runs in another schema
    than the workspace that sent it: tenant-schemas-celery switches before the task, and if
    that switch failed (the database was down) Celery logs the error and runs the task in the
    public schema anyway."""
    wanted = (getattr(task.request, "headers", None) or {}).get("_schema_name") or getattr(
        task.request, "_schema_name", None
    )
    if wanted and getattr(connection, "schema_name", None) != wanted:
        raise OperationalError(f"the task's workspace schema {wanted} was not selected")
