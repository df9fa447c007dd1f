"""A kept database connection is closed once it has served DB_CONN_MAX_SCHEMAS different
workspace schemas (tenants/connections.py), so a PostgreSQL backend's catalogue cache stays
bounded; the next query opens a fresh connection."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.signals import request_finished
from django.db import connection

from agents.models import Agent
from tenants import schemas
from tenants.connections import database_for, schemas_served
from tests.helpers.personas import World

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def kept_connections() -> Iterator[None]:
    """Connections kept between requests, as in workers (CONN_MAX_AGE is 0 in tests)."""
    before = connection.settings_dict["CONN_MAX_AGE"]
    connection.close()
    connection.settings_dict["CONN_MAX_AGE"] = 600
    yield
    connection.settings_dict["CONN_MAX_AGE"] = before
    connection.close()


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_a_connection_is_recycled_after_serving_the_limit_of_workspaces(
    committed_world: World, settings
) -> None:
    settings.DB_CONN_MAX_SCHEMAS = 2
    world = committed_world
    schemas.activate(world.workspace_a)
    Agent.objects.count()
    first = _backend_pid()
    request_finished.send(sender=None)  # the end of a request in alpha: one schema served
    assert schemas_served() == 1
    assert _backend_pid() == first

    schemas.activate(world.workspace_b)
    Agent.objects.count()
    request_finished.send(sender=None)  # the second workspace reaches the limit: closed

    assert connection.connection is None
    assert schemas_served() == 0
    schemas.activate(world.workspace_a)
    assert Agent.objects.count() == 0  # the next query just opens a new connection
    assert _backend_pid() != first
    schemas.activate_public()


def test_with_no_limit_a_connection_is_kept(committed_world: World, settings) -> None:
    settings.DB_CONN_MAX_SCHEMAS = 0
    for workspace in (committed_world.workspace_a, committed_world.workspace_b):
        schemas.activate(workspace)
        Agent.objects.count()
        request_finished.send(sender=None)
    assert connection.connection is not None
    schemas.activate_public()


def test_every_workspace_lives_in_the_default_database_today(committed_world: World) -> None:
    assert database_for(committed_world.workspace_a) == "default"
