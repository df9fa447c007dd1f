"""For tests that start other processes (a Celery worker, a server) on the test database."""

from __future__ import annotations

from urllib.parse import quote

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
