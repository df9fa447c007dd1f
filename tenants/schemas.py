"""Switching the database connection between the public schema and a workspace's schema.

django-tenants adds these methods to its connection wrapper at runtime; keeping the calls here
gives the rest of the code typed functions (and one place to look for schema switches).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.db import connection, connections

from tenants.connections import database_for, note_schema

if TYPE_CHECKING:
    from tenants.models import Workspace


def activate(workspace: Workspace) -> None:
    """Run this thread's next queries in `workspace`'s schema (then `public`), on the
    database that holds it."""
    alias = database_for(workspace)
    cast(Any, connections[alias]).set_tenant(workspace)
    note_schema(alias)


def activate_public() -> None:
    cast(Any, connection).set_schema_to_public()


def current_schema() -> str:
    return str(cast(Any, connection).schema_name)
