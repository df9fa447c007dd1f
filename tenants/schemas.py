"""Switching the database connection between the public schema and a workspace's schema, and
visiting every live workspace's schema in turn.

django-tenants adds these methods to its connection wrapper at runtime; keeping the calls here
gives the rest of the code typed functions (and one place to look for schema switches).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from django.db import DEFAULT_DB_ALIAS, connection, connections
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


@contextmanager
def schema_qualified(alias: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Run statements that name every table with its schema (`"public"."tenants_apikey"`)
    without the `SET search_path` django-tenants would put before them: they read the same
    rows whatever the path is. The schema selected stays selected; the next ordinary query sets
    the path as usual. Saves a round trip where the schema changes right after (an API key's
    lookup is followed by its workspace's queries: docs/decisions.md 128)."""
    wrapper: Any = connections[alias]
    wrapper.ensure_connection()
    # django-tenants' own guard against setting the path while it sets the path: while it is
    # up, opening a cursor leaves the path alone (and the path it remembers, if any, stands).
    before = wrapper._setting_search_path  # noqa: SLF001
    wrapper._setting_search_path = True  # noqa: SLF001
    try:
        yield
    finally:
        wrapper._setting_search_path = before  # noqa: SLF001


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
