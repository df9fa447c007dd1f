"""A clean first start reads cleanly: the demo seed executes its workflow runs itself, so it
sends the broker no `execute_step` message (each used to reach the worker on start, find its
step finished and be logged as "ignored")."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django_tenants.utils import schema_context

from tests.helpers.personas import World, access_of
from workflows import demo
from workflows.models import RUN_FINISHED, WorkflowRun

pytestmark = pytest.mark.django_db


def _queued() -> int:
    """The engine's messages waiting on the broker (the seed's approval-waiting notifications
    may queue their emails: those are real news for the demo's members)."""
    from config.celery import app

    with app.connection_for_read() as conn:
        messages = conn.default_channel.client.lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1)
    return sum(json.loads(m)["headers"]["task"] == "workflows.execute_step" for m in messages)


def test_the_demo_seed_runs_its_workflows_without_queueing_messages(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    before = _queued()
    # (the after-commit work runs where a commit would run it: in the workspace's schema)
    with (
        schema_context(world.workspace_a.schema_name),
        django_capture_on_commit_callbacks(execute=True),
    ):
        demo.seed_demo_workflows(
            access=access_of(world.owner, world.workspace_a), workspace=world.workspace_a
        )
    with schema_context(world.workspace_a.schema_name):
        statuses = set(WorkflowRun.objects.values_list("status", flat=True))
    assert statuses
    assert statuses <= set(RUN_FINISHED), statuses
    assert _queued() == before
