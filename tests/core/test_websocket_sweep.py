"""Every websocket route, opened by someone who must not see workspace A: anonymous and the
owner of workspace B. Each is refused at the handshake (close code 4404, as for a missing page)
and sends nothing first. A new websocket route without a parameter fixture fails the sweep."""

from __future__ import annotations

import re
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.test import Client
from django_tenants.utils import schema_context

from accounts.models import User
from agents.models import Conversation
from agents.services import agent_create
from config.asgi import application
from config.routing import websocket_urlpatterns
from tests.helpers.personas import World, access_of
from workflows import runs
from workflows.models import WorkflowRun
from workflows.services import workflow_create

pytestmark = pytest.mark.django_db(transaction=True)

FLOW: dict[str, Any] = {
    "schema_version": 1,
    "inputs": {},
    "steps": [{"id": "a", "type": "transform", "config": {"value": "x"}}],
    "edges": [],
    "output": {"result": "{{ steps.a }}"},
}


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> None:
    channel_layers.backends.clear()


def _ids(world: World) -> dict[str, Any]:
    """Real objects of workspace A for every websocket parameter."""
    owner = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(
            access=owner, name="Socket agent", model="offline:demo", system_prompt="Hi."
        )
        conversation = Conversation.objects.create(agent=agent, created_by_id=world.owner.pk)
        workflow = workflow_create(access=owner, name="Socket flow", definition=FLOW)
        run = runs.run_start(
            workflow=workflow, inputs={}, trigger=WorkflowRun.TriggerKind.MANUAL, access=owner
        )
    return {
        "workspace_slug": world.workspace_a.slug,
        "conversation_id": conversation.pk,
        "run_id": run.pk,
        "workflow_id": workflow.pk,
    }


def _headers(user: User | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", b"http://localhost")]
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return headers


def _paths(ids: dict[str, Any]) -> list[str]:
    paths = []
    for pattern in websocket_urlpatterns:
        route = str(pattern.pattern)
        params = re.findall(r"<(?:\w+:)?(\w+)>", route)
        missing = [p for p in params if p not in ids]
        assert not missing, f"Add a fixture for {missing} to tests/core/test_websocket_sweep.py"
        paths.append("/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids[m.group(1)]), route))
    return paths


def test_no_websocket_opens_for_anyone_outside_workspace_a(committed_world: World) -> None:
    paths = _paths(_ids(committed_world))
    assert len(paths) >= 3
    people = {"anonymous": _headers(None), "outsider": _headers(committed_world.outsider)}

    async def attempt(path: str, headers: list[tuple[bytes, bytes]]) -> tuple[bool, Any]:
        socket = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await socket.connect(timeout=10)
        if connected:
            await socket.disconnect()
        return connected, code

    async def sweep() -> dict[tuple[str, str], tuple[bool, Any]]:
        # One event loop for every attempt: the channel layer's connections belong to it.
        return {
            (who, path): await attempt(path, headers)
            for who, headers in people.items()
            for path in paths
        }

    outcomes = async_to_sync(sweep)()

    opened = {key: value for key, value in outcomes.items() if value[0] or value[1] != 4404}
    assert not opened, f"Websockets that did not refuse with 4404: {opened}"
