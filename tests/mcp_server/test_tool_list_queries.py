"""Listing the tools reads the exposed workflows (and their published versions) in one query,
however many there are: the checks of a published version read the database only for the
agents, models and sub-workflows it names."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from mcp_server import selectors
from tests.helpers.personas import World, access_of
from tests.helpers.workflows import flow, owners_workflow, transform
from workflows import services

pytestmark = pytest.mark.django_db


def _expose(world: World, name: str) -> None:
    definition = flow([transform("a", "{{ input.x }}")], [], inputs={"x": {"type": "string"}})
    workflow = owners_workflow(world, name, definition)
    with schema_context(world.workspace_a.schema_name):
        services.workflow_update(
            access=access_of(world.owner, world.workspace_a),
            workflow=workflow,
            name=name,
            description="",
            category="",
            mcp_exposed=True,
        )


def _list(world: World) -> tuple[int, list[str]]:
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name), CaptureQueriesContext(connection) as q:
        listed = selectors.exposed_workflows(access=access)
        for workflow in listed:
            selectors.workflow_input_schema(workflow)
    return len(listed), [query["sql"] for query in q.captured_queries]


def test_listing_exposed_workflows_does_not_read_more_per_workflow(world: World) -> None:
    _expose(world, "Flow 1")
    one, queries_for_one = _list(world)
    for n in range(2, 5):
        _expose(world, f"Flow {n}")
    four, queries_for_four = _list(world)

    assert (one, four) == (1, 4)
    assert len(queries_for_four) == len(queries_for_one)
    assert len([sql for sql in queries_for_four if '"workflows_workflow"' in sql]) == 1
