"""The web server's ASGI application (`manage.py serve` runs it): config.asgi's, with each
worker process taking its database connections from a pool.

Django's ASGI handler runs each request's synchronous code on a thread of its own, so a
connection kept with CONN_MAX_AGE would stay with a thread that is gone, and one opened per
request costs ~10 ms here (more than a whole API request). A psycopg pool per process
(Django's `OPTIONS["pool"]`) lends each request an open connection and takes it back when the
request ends; `WEB_DB_POOL_MAX_SIZE` connections at most per worker (docs/operations.md,
"Serving"; docs/decisions.md 98). Other processes (Celery, commands, tests) keep their own
connection rules: only the server imports this module.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

from django.conf import settings


def pool_databases(databases: dict[str, dict[str, Any]], max_size: int) -> None:
    """Switch every PostgreSQL database to a pool of at most `max_size` connections (no pool
    when 0). Done before Django creates any connection."""
    if max_size <= 0:
        return
    for database in databases.values():
        options: dict[str, Any] = database.setdefault("OPTIONS", {})
        options["pool"] = {
            "min_size": 1,
            "max_size": max_size,
            # A request waits this long for a free connection, then answers 503.
            "timeout": 10,
            # Replaced now and then; tenants/connections.py also closes one that has served
            # DB_CONN_MAX_SCHEMAS workspaces.
            "max_lifetime": 1800,
            "max_idle": 300,
        }
        database["CONN_MAX_AGE"] = 0  # the pool keeps the connections, not the thread
        database["CONN_HEALTH_CHECKS"] = True  # the pool checks a connection before lending it


pool_databases(settings.DATABASES, settings.WEB_DB_POOL_MAX_SIZE)

from config.asgi import application  # noqa: E402

__all__ = ["application"]
