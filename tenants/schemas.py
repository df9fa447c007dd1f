"""Switching the database connection between the public schema and a workspace's schema, and
visiting every live workspace's schema in turn.

django-tenants adds these methods to its connection wrapper at runtime; keeping the calls here
gives the rest of the code typed functions (and one place to look for schema switches).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, cast

from django.db import connection, connections
from django.db.models import QuerySet
from django_tenants.utils import get_public_schema_name, schema_context

from tenants.connections import database_for, note_schema
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


def live_workspaces() -> QuerySet[Workspace]:
    """Every workspace with data of its own: not the template, not a row for the public
    schema, not a purged one (its schema is gone; docs/privacy.md). Workspaces scheduled for
    deletion are still here: they are migrated and recovered so that a restore finds them
    whole. Commands, periodic tasks and migrations go through this one filter."""
    workspaces: QuerySet[Workspace] = Workspace.objects.filter(
        is_template=False, purged_at__isnull=True
    )
    return workspaces.exclude(schema_name=get_public_schema_name())


def each_live_workspace(workspaces: Iterable[Workspace] | None = None) -> Iterator[Workspace]:
    """Yield each of `workspaces` (default: every live workspace, oldest first) while its
    schema is active; the schema active before is back after each one, also when the loop
    body breaks out or raises. A body that must not stop the others catches per workspace:

        for workspace in each_live_workspace():
            try:
                ...
            except Exception:
                logger.exception("... failed in schema %s", workspace.schema_name)
    """
    for workspace in live_workspaces().order_by("pk") if workspaces is None else workspaces:
        with schema_context(workspace.schema_name):
            yield workspace
