"""A circuit breaker per provider target, with its state in Redis so every worker agrees.

Closed: calls flow; each failure counts within a window. After `threshold` failures in the
window the circuit opens for `cooldown` seconds: the gateway skips the target (no request is
sent). When the cooldown ends, one trial call is let through (half-open): success closes the
circuit, failure opens it again.

Without Redis the breaker is open-minded: every call is let through and nothing is counted. It
protects providers and budgets from a flapping target; it must not fail a run because the
broker's Redis is restarting (the step would fail instead of finishing).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from django.conf import settings
from prometheus_client.core import GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)
REDIS_DOWN = (redis.RedisError, OSError)


@dataclass(frozen=True)
class BreakerPolicy:
    threshold: int = 5
    window_seconds: int = 60
    cooldown_seconds: int = 30


def redis_client() -> redis.Redis:
    """This process's client for REDIS_URL (a fork gets its own pool): a new connection per
    call cost more than the commands the gateway sends on it."""
    return _process_client(settings.REDIS_URL, os.getpid())


@functools.cache
def _process_client(url: str, pid: int) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2)


class CircuitBreaker:
    def __init__(self, key: str, policy: BreakerPolicy | None = None) -> None:
        prefix = settings.CACHES["default"].get("KEY_PREFIX", "am")
        self.key = f"{prefix}:breaker:{key}"
        self.policy = policy or BreakerPolicy(
            threshold=settings.GATEWAY_BREAKER_THRESHOLD,
            window_seconds=settings.GATEWAY_BREAKER_WINDOW_SECONDS,
            cooldown_seconds=settings.GATEWAY_BREAKER_COOLDOWN_SECONDS,
        )
        self.redis = redis_client()
        self._clean = False  # the last allows_call saw no failures and no open circuit

    def allows_call(self) -> bool:
        try:
            return self._allows_call()
        except REDIS_DOWN:
            logger.warning("circuit breaker %s: Redis unavailable; call let through", self.key)
            self._clean = True  # nothing to record afterwards
            return True

    def _allows_call(self) -> bool:
        open_until, failures = self.redis.mget(f"{self.key}:open_until", f"{self.key}:failures")
        self._clean = open_until is None and failures is None
        if open_until is None:
            return True
        if time.time() < float(open_until):
            return False
        # Half-open: exactly one caller wins the trial until it reports back.
        return bool(
            self.redis.set(
                f"{self.key}:trial", "1", nx=True, ex=max(self.policy.cooldown_seconds, 1)
            )
        )

    def record_success(self) -> None:
        """Reset the failure count and close the circuit. Skipped when the check before this
        call saw nothing to reset (the common case: one round trip fewer per call); a failure
        another worker counted meanwhile then expires with its window instead."""
        if self._clean:
            return
        with contextlib.suppress(*REDIS_DOWN):
            self.redis.delete(f"{self.key}:failures", f"{self.key}:open_until", f"{self.key}:trial")

    def record_failure(self) -> bool:
        """Count a failure; True if this failure opened the circuit (never without Redis)."""
        try:
            return self._record_failure()
        except REDIS_DOWN:
            logger.warning("circuit breaker %s: Redis unavailable; failure not counted", self.key)
            return False

    def _record_failure(self) -> bool:
        failures_key = f"{self.key}:failures"
        pipe = self.redis.pipeline()
        pipe.incr(failures_key)
        pipe.expire(failures_key, self.policy.window_seconds, nx=True)
        count = int(pipe.execute()[0])
        half_open_trial_failed = self.redis.delete(f"{self.key}:trial") > 0
        if count >= self.policy.threshold or half_open_trial_failed:
            open_until = time.time() + self.policy.cooldown_seconds
            self.redis.set(
                f"{self.key}:open_until",
                str(open_until),
                ex=max(self.policy.cooldown_seconds * 10, 1),
            )
            # The open circuits, for the metrics (read when scraped: open_breaker_metrics).
            self.redis.zadd(_open_set_key(), {self.key: open_until})
            self.redis.delete(failures_key)
            return True
        return False

    def is_open(self) -> bool:
        open_until = self.redis.get(f"{self.key}:open_until")
        return open_until is not None and time.time() < float(open_until)


def _open_set_key() -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', 'am')}:breakers-open"


def open_breaker_metrics() -> Iterable[Metric]:
    """Scrape-time figure (core/metrics.py): circuits open now, by scope (a platform target,
    labelled by provider; or a workspace's own credential). The set forgets circuits whose
    cooldown ended."""
    client = redis_client()
    now = time.time()
    client.zremrangebyscore(_open_set_key(), "-inf", now)
    prefix = f"{settings.CACHES['default'].get('KEY_PREFIX', 'am')}:breaker:"
    counts: dict[tuple[str, str], int] = {}
    for member in client.zrange(_open_set_key(), 0, -1):
        key = (member.decode() if isinstance(member, bytes) else str(member)).removeprefix(prefix)
        scope, _, rest = key.partition(":")
        label = ("platform", rest.partition(":")[0]) if scope == "platform" else ("workspace", "")
        counts[label] = counts.get(label, 0) + 1
    family = GaugeMetricFamily(
        "agentmarket_circuit_breakers_open",
        "Provider targets whose circuit is open now, by scope and (platform targets) provider.",
        labels=["scope", "provider"],
    )
    for scope in ("platform", "workspace"):
        if not any(s == scope for s, _ in counts):
            family.add_metric([scope, ""], 0)
    for (scope, provider), count in sorted(counts.items()):
        family.add_metric([scope, provider], count)
    yield family
