"""The canvas's websocket (workflows/builder/consumers.py), through the real ASGI stack and the
channel layer in the real Redis: two members see each other and the step each has selected, a
save by anyone (canvas, side panel, API: the service) is pushed to every open canvas of that
workflow, and so is a run starting and the watched run changing. Anonymous and outsiders are
refused by tests/core/test_websocket_sweep.py; a viewer may watch."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.test import Client
from django_tenants.utils import schema_context

from accounts.models import User
from config.asgi import application
from tenants.models import Membership, Role
from tests.helpers.personas import World, access_of, make_user
from tests.helpers.workflows import owners_workflow
from workflows import engine, runs, services
from workflows.builder import canvas_ops
from workflows.models import StepRun, Workflow, WorkflowRun

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10.0  # seconds: a deadline for a message, never a sleep

FLOW: dict[str, Any] = {
    "schema_version": 1,
    "steps": [
        {"id": "start", "type": "transform", "config": {"value": "go"}},
        {"id": "end", "type": "transform", "config": {"value": "{{ steps.start }}"}},
    ],
    "edges": [{"from": "start", "to": "end"}],
}


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> None:
    channel_layers.backends.clear()


@pytest.fixture
def workflow(committed_world: World) -> Workflow:
    return owners_workflow(committed_world, "Shared", FLOW)


def _headers(user: User) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [
        (b"origin", b"http://localhost"),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
    ]


def _socket(headers: list[tuple[bytes, bytes]], workflow: Workflow) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application, f"/ws/w/alpha/workflows/{workflow.pk}/canvas/", headers=headers
    )


async def _next(ws: WebsocketCommunicator, kind: str, test: Any = None) -> dict[str, Any]:
    """The next message of `kind` (passing `test`), skipping others."""
    while True:
        message = json.loads(await ws.receive_from(timeout=WAIT))
        if message["type"] == kind and (test is None or test(message)):
            return message


def test_two_members_see_each_other_and_the_step_each_has_selected(
    committed_world: World, workflow: Workflow
) -> None:
    owner, member = _headers(committed_world.owner), _headers(committed_world.member)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        a, b = _socket(owner, workflow), _socket(member, workflow)
        assert (await a.connect())[0]
        alone = await _next(a, "presence")
        assert (await b.connect())[0]
        await b.send_to(text_data=json.dumps({"selected": "end"}))
        seen = await _next(a, "presence", lambda m: m["present"] and m["present"][0]["selected"])
        by_member = await _next(b, "presence", lambda m: m["present"])
        await b.disconnect()
        gone = await _next(a, "presence", lambda m: not m["present"])
        await a.disconnect()
        assert gone["present"] == []
        return alone, seen, by_member

    alone, seen, by_member = async_to_sync(scenario)()
    assert alone["present"] == []  # nobody else yet; never oneself
    assert seen["present"] == [{"name": "member@alpha.test", "selected": "end"}]
    assert by_member["present"] == [{"name": "owner@alpha.test", "selected": ""}]


def test_a_save_by_anyone_is_pushed_to_every_open_canvas(
    committed_world: World, workflow: Workflow
) -> None:
    world = committed_world
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    owner, watcher = _headers(world.owner), _headers(viewer)

    def canvas_edit() -> int:
        with schema_context(world.workspace_a.schema_name):
            result = canvas_ops.canvas_apply(
                access=access_of(world.member, world.workspace_a),
                workflow=workflow,
                base=1,
                ops=[{"op": "move", "step": "end", "position": {"x": 8, "y": 200}}],
            )
            return result.version.number

    def panel_save() -> int:
        with schema_context(world.workspace_a.schema_name):
            version = services.version_save(
                access=access_of(world.owner, world.workspace_a),
                workflow=workflow,
                definition=FLOW,
            )
            return version.number

    async def scenario() -> list[dict[str, Any]]:
        a, v = _socket(owner, workflow), _socket(watcher, workflow)
        assert (await a.connect())[0]
        assert (await v.connect())[0]
        number = await sync_to_async(canvas_edit)()
        pushed = [await _next(a, "saved"), await _next(v, "saved")]
        assert number == 2
        await sync_to_async(panel_save)()
        pushed.append(await _next(a, "saved"))
        await a.disconnect()
        await v.disconnect()
        return pushed

    assert [m["version"] for m in async_to_sync(scenario)()] == [2, 2, 3]


def test_a_run_starting_and_the_watched_run_changing_are_pushed(
    committed_world: World, workflow: Workflow
) -> None:
    world = committed_world
    owner = _headers(world.owner)

    def start() -> int:
        with schema_context(world.workspace_a.schema_name):
            run = runs.run_start(
                workflow=workflow,
                inputs={},
                trigger=WorkflowRun.TriggerKind.MANUAL,
                access=access_of(world.owner, world.workspace_a),
            )
            return run.pk

    def execute(run_id: int) -> None:
        with schema_context(world.workspace_a.schema_name):
            step = StepRun.objects.get(run_id=run_id, node_id="start", parent__isnull=True)
            engine.step_execute(step.pk)

    async def scenario() -> tuple[int, dict[str, Any], dict[str, Any]]:
        a = _socket(owner, workflow)
        assert (await a.connect())[0]
        run_id = await sync_to_async(start)()
        started = await _next(a, "run")
        await a.send_to(text_data=json.dumps({"watch": run_id}))
        await a.send_to(text_data=json.dumps({"selected": "start"}))  # answered after the watch
        await _next(a, "presence")
        await sync_to_async(execute)(run_id)
        changed = await _next(a, "run")
        await a.disconnect()
        return run_id, started, changed

    run_id, started, changed = async_to_sync(scenario)()
    assert started == {"type": "run", "run": run_id}
    assert changed == {"type": "run", "run": run_id}


def test_a_run_of_another_workflow_cannot_be_watched(
    committed_world: World, workflow: Workflow
) -> None:
    world = committed_world
    other = owners_workflow(world, "Other", FLOW)
    owner = _headers(world.owner)

    def start_and_execute_other() -> int:
        with schema_context(world.workspace_a.schema_name):
            run = runs.run_start(
                workflow=other,
                inputs={},
                trigger=WorkflowRun.TriggerKind.MANUAL,
                access=access_of(world.owner, world.workspace_a),
            )
            step = StepRun.objects.get(run_id=run.pk, node_id="start", parent__isnull=True)
            engine.step_execute(step.pk)
            return run.pk

    def save() -> None:
        with schema_context(world.workspace_a.schema_name):
            services.version_save(
                access=access_of(world.owner, world.workspace_a),
                workflow=workflow,
                definition={**FLOW, "output": {"result": "{{ steps.end }}"}},
            )

    async def scenario() -> list[dict[str, Any]]:
        a = _socket(owner, workflow)
        assert (await a.connect())[0]
        await _next(a, "presence")
        run_id = await sync_to_async(start_and_execute_other)()
        await a.send_to(text_data=json.dumps({"watch": run_id}))
        await a.send_to(text_data="not json")
        await sync_to_async(save)()  # a marker: everything before it has been delivered
        got: list[dict[str, Any]] = []
        while not got or got[-1]["type"] != "saved":
            got.append(json.loads(await a.receive_from(timeout=WAIT)))
        await a.disconnect()
        return got

    assert [m["type"] for m in async_to_sync(scenario)()] == ["saved"]
