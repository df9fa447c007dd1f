"""A real Celery worker process, on the real broker, runs each task in its workspace's schema."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django_tenants.utils import schema_context

from tenants.tasks import inventory
from tests.helpers.personas import World
from tests.probe.models import Folder

pytestmark = pytest.mark.worker


def test_each_task_sees_only_its_own_workspace(committed_world: World, worker_queue: str) -> None:
    with schema_context(committed_world.workspace_a.schema_name):
        Folder.objects.create(name="A's folder")
        Folder.objects.create(name="A's other folder")
        seen_from_a = inventory.apply_async(queue=worker_queue).get(timeout=60)
    with schema_context(committed_world.workspace_b.schema_name):
        seen_from_b = inventory.apply_async(queue=worker_queue).get(timeout=60)

    assert seen_from_a["schema"] == "ws_alpha"
    assert seen_from_a["rows"]["probe.Folder"] == 2
    assert seen_from_b["schema"] == "ws_bravo"
    assert seen_from_b["rows"]["probe.Folder"] == 0


def test_worker_check_command_reports_the_schema(committed_world: World, worker_queue: str) -> None:
    out = StringIO()
    call_command("worker_check", workspace="bravo", queue=worker_queue, timeout=60, stdout=out)
    assert '"schema": "ws_bravo"' in out.getvalue()


def test_worker_check_names_an_unknown_workspace(committed_world: World) -> None:
    with pytest.raises(CommandError, match="--workspace: no workspace with slug 'nope'"):
        call_command("worker_check", workspace="nope")
