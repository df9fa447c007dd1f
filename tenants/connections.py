"""Which database connection serves a workspace, and how long one is kept.

Every schema a PostgreSQL backend reads leaves its tables, indexes and constraints in that
backend's catalogue caches, and nothing evicts them: a long-lived connection that serves every
workspace grows with their number (216–294 MB of private memory after touching 200 or 1,000
workspaces in bench/tenant_scale.py; 748 MB in issue 20's measurement). So a connection is
closed once it has served `DB_CONN_MAX_SCHEMAS` different schemas, at the end of the request or
task that reached the limit (on top of `CONN_MAX_AGE`). The cost is one reconnect (a few ms)
per that many workspaces.

`database_for` is the one place a workspace's database is chosen (`tenants.schemas.activate`
asks it). Today every workspace lives in the default database; sharding workspaces across
servers (docs/operations.md) changes this function and adds a router that sends workspace
models to the same alias.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

if TYPE_CHECKING:
    from tenants.models import Workspace

# The schemas each open PostgreSQL connection has served, by the driver's connection object:
# with the web server's pool (config/serving.py) one connection serves many requests, each
# through a wrapper of its own, so the count belongs to the connection, not the wrapper.
_SERVED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def database_for(workspace: Workspace) -> str:
    """The database alias that holds `workspace`'s schema."""
    return DEFAULT_DB_ALIAS


def _served(wrapper: Any) -> set[str] | None:
    """The schemas the wrapper's current database connection has served (a new connection
    starts with none)."""
    if wrapper.connection is None:
        return None
    return _SERVED.setdefault(wrapper.connection, set())


def note_schema(alias: str = DEFAULT_DB_ALIAS) -> None:
    """Count the schema the connection is on now among those it has served."""
    wrapper: Any = connections[alias]
    schema = getattr(wrapper, "schema_name", None)
    served = _served(wrapper)
    if schema and served is not None:
        served.add(schema)


def schemas_served(alias: str = DEFAULT_DB_ALIAS) -> int:
    return len(_served(connections[alias]) or ())


def recycle_spread_connections(**_: Any) -> None:
    """At the end of a request or task: note its schema, and close every connection that has
    served `DB_CONN_MAX_SCHEMAS` schemas or more (the next query opens a fresh one). A pooled
    connection is closed for good, not handed back: the pool opens a new one in its place."""
    limit: int = settings.DB_CONN_MAX_SCHEMAS
    for wrapper in connections.all(initialized_only=True):
        note_schema(wrapper.alias)
        if limit and schemas_served(wrapper.alias) >= limit:
            if getattr(wrapper, "pool", None) is not None and wrapper.connection is not None:
                _SERVED.pop(wrapper.connection, None)
                wrapper.connection.close()
            wrapper.close()
