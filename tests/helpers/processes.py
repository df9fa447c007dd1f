"""For tests that start other processes (a Celery worker, a server) on the test database."""

from __future__ import annotations

import os
from urllib.parse import quote

from django.conf import settings
from django.db import connection


def database_url_for_children() -> str:
    """The URL of the database this test session uses (the `test_…` one), for subprocesses."""
    s = connection.settings_dict
    auth = quote(s["USER"] or "", safe="")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"], safe="")
    host = quote(s["HOST"] or "", safe="")
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{s['NAME']}"


def worker_environment() -> dict[str, str]:
    """The environment of a Celery worker started by a test: test settings, the test database
    and Redis, and callbacks to receivers on 127.0.0.1 allowed."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url_for_children(),
        "REDIS_URL": settings.REDIS_URL,
        "OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
    }
