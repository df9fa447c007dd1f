"""A lost connection to Redis (task queue, cache, throttles) or PostgreSQL answers 503 with the
error envelope and `Retry-After`, not a 500 (core.exceptions.outage_of, one mapping for the API
handler and `handler500`). The whole path with a real broker and database being restarted is
in tests/workflows/test_recovery.py."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.db import OperationalError, connection, transaction
from django.test import RequestFactory
from kombu.exceptions import OperationalError as BrokerError

from core.exceptions import outage_of
from core.views import server_error
from tests.helpers.personas import World, key_client

pytestmark = pytest.mark.django_db

UNREACHABLE = "redis://127.0.0.1:9/0"  # the discard port: nothing listens


def test_the_api_answers_503_when_redis_is_down(world: World, settings: Any) -> None:
    client = key_client(world, ["workspace.view"])
    # The throttles read Redis before the view runs (their counters, the address's failed
    # keys): it is down, for them and for the cache.
    settings.REDIS_URL = UNREACHABLE
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": UNREACHABLE,
        }
    }

    response = client.get("/api/v1/workflows/")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["error"] == {
        "code": "service_unavailable",
        "message": "The task queue is unavailable; try again shortly.",
        "fields": {},
    }


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (redis.exceptions.ConnectionError("refused"), "The task queue is unavailable"),
        (BrokerError("broker down"), "The task queue is unavailable"),
        (OperationalError("server closed the connection"), "The database is unavailable"),
    ],
)
def test_pages_and_hooks_answer_503_for_an_outage_anywhere(error: Exception, message: str) -> None:
    # handler500 runs inside the `except` of whatever escaped a view or a middleware (the
    # workspace middleware reads the database before any view).
    for path, kind in (("/w/alpha/", "text/html"), ("/hooks/workflows/x/y/", "application/json")):
        request = RequestFactory().get(path)
        try:
            raise error
        except Exception:
            response = server_error(request)
        assert response.status_code == 503
        assert response["Retry-After"] == "5"
        assert kind in response["Content-Type"]
        assert message in response.content.decode()


def test_other_errors_still_answer_500() -> None:
    request = RequestFactory().get("/w/alpha/")
    try:
        raise KeyError("a bug")
    except Exception:
        response = server_error(request)
    assert response.status_code == 500


def _sleep_past_a_statement_timeout() -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 1")
        cursor.execute("SELECT pg_sleep(1)")


def test_an_error_a_live_database_raises_is_not_an_outage(world: World) -> None:
    """A statement timeout (like a deadlock or a lock not granted) comes from a server that is
    up: it is a failure to fix, logged as a 500, not a 503 that says to come back later."""
    with pytest.raises(OperationalError) as timed_out:
        _sleep_past_a_statement_timeout()
    assert outage_of(timed_out.value) is None
    assert outage_of(OperationalError("server closed the connection")) is not None
