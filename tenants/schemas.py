"""Switching the database connection between the public schema and a workspace's schema.

django-tenants adds these methods to its connection wrapper at runtime; keeping the calls here
gives the rest of the code typed functions (and one place to look for schema switches).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.db import connection

if TYPE_CHECKING:
    from tenants.models import Workspace


def activate(workspace: Workspace) -> None:
    """Run this thread's next queries in `workspace`'s schema (then `public`)."""
    from tenants.connections import note_schema

    cast(Any, connection).set_tenant(workspace)
    note_schema()


def activate_public() -> None:
    cast(Any, connection).set_schema_to_public()


def current_schema() -> str:
    return str(cast(Any, connection).schema_name)
