"""The workspace presence websocket, end to end through the real ASGI stack and Redis."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.models import User
from config.asgi import application
from tests.helpers.personas import World

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> None:
    """Each test runs its own event loop; a channel layer keeps connections bound to the loop
    that opened them, so every test starts with a new one."""
    channel_layers.backends.clear()


def _communicator(headers: list[tuple[bytes, bytes]], slug: str = "alpha") -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/w/{slug}/presence/", headers=headers)


def _headers(user: User | None, origin: str = "http://localhost") -> list[tuple[bytes, bytes]]:
    """Browser-like handshake headers: the Origin and the user's session cookie. Built before
    the event loop starts (signing in touches the database synchronously)."""
    headers = [(b"origin", origin.encode())]
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return headers


def test_members_see_each_other_come_and_go(committed_world: World) -> None:
    owner_headers = _headers(committed_world.owner)
    member_headers = _headers(committed_world.member)

    async def scenario() -> tuple[str, str, str]:
        owner_ws = _communicator(owner_headers)
        connected, _ = await owner_ws.connect()
        assert connected
        first = await owner_ws.receive_from(timeout=5)

        member_ws = _communicator(member_headers)
        assert (await member_ws.connect())[0]
        both = await owner_ws.receive_from(timeout=5)
        await member_ws.receive_from(timeout=5)

        await member_ws.disconnect()
        after_leave = await owner_ws.receive_from(timeout=5)
        await owner_ws.disconnect()
        return first, both, after_leave

    first, both, after_leave = async_to_sync(scenario)()

    assert 'id="presence"' in first
    assert "owner@alpha.test" in first
    assert "member@alpha.test" not in first
    assert "owner@alpha.test" in both
    assert "member@alpha.test" in both
    assert "member@alpha.test" not in after_leave


@pytest.mark.parametrize("who", ["outsider", "anonymous"])
def test_outsiders_and_anonymous_visitors_are_refused(committed_world: World, who: str) -> None:
    user = committed_world.outsider if who == "outsider" else None
    headers = _headers(user)

    async def scenario() -> tuple[bool, int | str | None]:
        ws = _communicator(headers)
        connected, code = await ws.connect()
        await ws.disconnect()
        return connected, code

    connected, code = async_to_sync(scenario)()
    assert not connected
    assert code == 4404


def test_a_foreign_origin_is_refused(committed_world: World) -> None:
    evil_headers = _headers(committed_world.owner, origin="http://evil.example")

    async def scenario() -> bool:
        ws = _communicator(evil_headers)
        connected, _ = await ws.connect()
        await ws.disconnect()
        return connected

    assert async_to_sync(scenario)() is False


def test_presence_groups_are_separate_per_workspace(committed_world: World) -> None:
    owner_headers = _headers(committed_world.owner)
    outsider_headers = _headers(committed_world.outsider)

    async def scenario() -> str:
        alpha = _communicator(owner_headers)
        await alpha.connect()
        await alpha.receive_from(timeout=5)
        bravo = _communicator(outsider_headers, slug="bravo")
        await bravo.connect()
        bravo_view = await bravo.receive_from(timeout=5)
        assert await alpha.receive_nothing(timeout=0.5)
        await bravo.disconnect()
        await alpha.disconnect()
        return bravo_view

    bravo_view = async_to_sync(scenario)()
    assert "outsider@bravo.test" in bravo_view
    assert "owner@alpha.test" not in bravo_view


def test_a_session_the_workspace_sign_in_rules_refuse_cannot_open_its_websockets(
    committed_world: World,
) -> None:
    from tenants.models import WorkspaceSignIn

    WorkspaceSignIn.objects.create(workspace=committed_world.workspace_a, mfa_required=True)
    headers = _headers(committed_world.member)  # no two-factor

    async def scenario() -> tuple[bool, int | str | None]:
        ws = _communicator(headers)
        connected, code = await ws.connect()
        await ws.disconnect()
        return connected, code

    connected, code = async_to_sync(scenario)()
    assert not connected
    assert code == 4404
