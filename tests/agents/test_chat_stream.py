"""Chat over the websocket, end to end: the real ASGI stack (session cookie, workspace
middleware, consumer), a real Celery worker answering the turn, and the channel layer in the
real Redis relaying every piece to the page as htmx out-of-band fragments."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from accounts.models import User
from agents import services as agent_services
from agents.models import (
    Agent,
    AliasTarget,
    Conversation,
    ConversationTurn,
    ModelAlias,
    ProviderCredential,
    WorkspaceBudget,
)
from billing.models import ModelPrice
from config.asgi import application
from tests.fakes import FakeAnthropic
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.django_db(transaction=True)

DELTA = re.compile(r'<span hx-swap-oob="beforeend:#turn-(\d+)-answer">(.*?)</span>', re.DOTALL)
WAIT = 30.0  # seconds: a generous deadline, never a sleep


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> None:
    """Each test runs its own event loop; channel layers bind connections to the loop that
    opened them, so every test starts with a new one."""
    channel_layers.backends.clear()


def _headers(user: User | None) -> list[tuple[bytes, bytes]]:
    """A browser's handshake: its Origin and the user's session cookie."""
    headers = [(b"origin", b"http://localhost")]
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return headers


def _socket(headers: list[tuple[bytes, bytes]], conversation_id: int, slug: str = "alpha") -> Any:
    return WebsocketCommunicator(
        application, f"/ws/w/{slug}/conversations/{conversation_id}/", headers=headers
    )


def _question(text: str) -> str:
    """What the htmx ws extension sends for the message form (`ws-send`)."""
    return json.dumps(
        {"question": text, "HEADERS": {"HX-Request": "true", "HX-Trigger": "chat-form"}}
    )


async def _until(ws: Any, done: Callable[[str], bool]) -> list[str]:
    """Messages until (and including) the first one `done` accepts, within WAIT seconds."""
    messages: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        message = await ws.receive_from(timeout=max(deadline - loop.time(), 0.1))
        messages.append(message)
        if done(message):
            return messages


def _final(message: str) -> bool:
    return (
        'hx-swap-oob="true"' in message
        and re.search(r'<article [^>]*data-status="(done|failed)"', message) is not None
    )


def _text(messages: list[str]) -> str:
    return "".join(html.unescape(piece) for m in messages for _, piece in DELTA.findall(m))


def _agent(world: World, **config: Any) -> Agent:
    return agent_services.agent_create(
        access=access_of(world.owner, world.workspace_a),
        name="Helper",
        **{"model": "offline:demo", **config},
    )


def _conversation(world: World, agent: Agent, user: User | None = None) -> Conversation:
    return Conversation.objects.create(
        agent=agent, title="Chat", created_by_id=(user or world.owner).pk
    )


def test_an_answer_streams_piece_by_piece_then_the_final_footer(
    committed_world: World, worker_queue: str
) -> None:
    ModelPrice.objects.create(
        provider="offline", model="demo", input_per_mtok=Decimal(50), output_per_mtok=Decimal(100)
    )
    with schema_context(committed_world.workspace_a.schema_name):
        conversation = _conversation(committed_world, _agent(committed_world))
    headers = _headers(committed_world.owner)

    async def scenario() -> tuple[str, list[str]]:
        ws = _socket(headers, conversation.pk)
        connected, _ = await ws.connect()
        assert connected
        first = await ws.receive_from(timeout=WAIT)
        await ws.send_to(text_data=_question("How long do refunds take for an order?"))
        messages = await _until(ws, _final)
        await ws.disconnect()
        return first, messages

    first, messages = async_to_sync(scenario)()

    with schema_context(committed_world.workspace_a.schema_name):
        turn = ConversationTurn.objects.get()
    # On connect the page is brought up to date (no turns yet).
    assert 'id="turns"' in first
    assert 'hx-swap-oob="true"' in first
    assert "No questions yet" in first
    # The sender's form comes back empty and focused; then the new turn, then the pieces.
    form, started, *pieces, final = messages
    assert 'id="chat-form"' in form
    assert "autofocus" in form
    assert "field--invalid" not in form
    assert 'hx-swap-oob="beforeend:#turns"' in started
    assert f'id="turn-{turn.pk}"' in started
    assert "Answering…" in started
    assert "How long do refunds take" in started
    assert len(pieces) >= 10
    assert all(DELTA.fullmatch(p) for p in pieces)  # one word each
    assert _text(pieces) == turn.answer  # in order, nothing lost, nothing doubled
    # The saved turn has the whole answer and what it cost; the final fragment shows it.
    assert turn.status == ConversationTurn.Status.DONE
    assert turn.answer.startswith("[offline model]")
    assert "How long do refunds take" in turn.answer
    assert turn.input_tokens > 0
    assert turn.output_tokens > 0
    assert turn.cost_usd > 0
    assert f'id="turn-{turn.pk}-footer"' in final
    assert "Answering…" not in final
    assert f"{turn.input_tokens} in" in final
    assert f"{turn.output_tokens} out" in final
    assert f"${turn.cost_usd.normalize():f}" in final
    with schema_context(committed_world.workspace_a.schema_name):
        assert Conversation.objects.get().title == "Chat"  # kept: it already had one


def test_a_calculator_question_shows_the_tool_step_with_arguments_and_result(
    committed_world: World, worker_queue: str
) -> None:
    with schema_context(committed_world.workspace_a.schema_name):
        agent = _agent(committed_world, tools=["calculator"])
        conversation = _conversation(committed_world, agent)
    headers = _headers(committed_world.owner)

    async def scenario() -> list[str]:
        ws = _socket(headers, conversation.pk)
        assert (await ws.connect())[0]
        await ws.receive_from(timeout=WAIT)
        await ws.send_to(text_data=_question("What is 12*7?"))
        messages = await _until(ws, _final)
        await ws.disconnect()
        return messages

    messages = async_to_sync(scenario)()

    with schema_context(committed_world.workspace_a.schema_name):
        turn = ConversationTurn.objects.get()
    running = next(m for m in messages if "chat-step--running" in m)
    done = next(m for m in messages if f'id="turn-{turn.pk}-step-0" hx-swap-oob="true"' in m)
    assert f'hx-swap-oob="beforeend:#turn-{turn.pk}-steps"' in running
    assert "calculator" in running
    assert "&quot;expression&quot;: &quot;12*7&quot;" in running
    assert "running…" in running
    assert "Result" not in running
    assert '<pre class="chat-step__data">84</pre>' in done
    assert "badge--success" in done
    assert messages.index(running) < messages.index(done) < len(messages) - 1
    assert _text(messages) == turn.answer == "[offline model] The tool returned: 84"
    assert turn.tool_steps == [
        {"tool": "calculator", "arguments": {"expression": "12*7"}, "output": "84", "ok": True}
    ]
    assert '<details class="chat-step"' in messages[-1]
    assert "84" in messages[-1]


def test_streaming_through_the_anthropic_sdk_and_a_page_opened_mid_answer_catches_up(
    committed_world: World, worker_queue: str
) -> None:
    answer = "Refunds are processed within five business days of the approval of your request."
    ModelPrice.objects.create(
        provider="anthropic",
        model="claude-x",
        input_per_mtok=Decimal(3),
        output_per_mtok=Decimal(15),
    )
    with FakeAnthropic() as fake:
        fake.queue(answer, usage={"input_tokens": 1200, "output_tokens": 40}, chunk_delay=0.15)
        with schema_context(committed_world.workspace_a.schema_name):
            credential = ProviderCredential(
                name="anthropic", kind="anthropic", base_url=fake.base_url
            )
            credential.set_api_key("sk-ant-test-1234")
            credential.save()
            alias = ModelAlias.objects.create(name="claude")
            AliasTarget.objects.create(
                alias=alias, position=0, kind="anthropic", model="claude-x", credential=credential
            )
            conversation = _conversation(committed_world, _agent(committed_world, model="claude"))
        headers = _headers(committed_world.owner)
        page_client = Client()
        page_client.force_login(committed_world.owner)
        url = reverse(
            "conversation_detail",
            kwargs={"workspace_slug": "alpha", "conversation_id": conversation.pk},
        )

        async def scenario() -> tuple[list[str], str, str, list[str]]:
            first_tab = _socket(headers, conversation.pk)
            assert (await first_tab.connect())[0]
            await first_tab.receive_from(timeout=WAIT)
            await first_tab.send_to(text_data=_question("How long do refunds take?"))
            before = await _until(first_tab, lambda m: DELTA.search(m) is not None)
            # The answer is streaming: a page (re)opened now shows it as answering …
            reloaded = (await sync_to_async(page_client.get)(url)).content.decode()
            # … and its socket catches up with what was written so far, then follows.
            second_tab = _socket(headers, conversation.pk)
            assert (await second_tab.connect())[0]
            caught_up = await second_tab.receive_from(timeout=WAIT)
            followed = await _until(second_tab, _final)
            rest = await _until(first_tab, _final)
            await first_tab.disconnect()
            await second_tab.disconnect()
            return before + rest, reloaded, caught_up, followed

        first_tab, reloaded, caught_up, followed = async_to_sync(scenario)()
        request = fake.requests[0]

    with schema_context(committed_world.workspace_a.schema_name):
        turn = ConversationTurn.objects.get()
    assert request.body["stream"] is True
    assert request.api_key == "sk-ant-test-1234"
    assert _text(first_tab) == answer
    assert "Answering…" in reloaded
    assert 'aria-busy="true"' in reloaded
    assert 'data-status="streaming"' in caught_up
    assert 'id="turns"' in caught_up
    partial = re.search(r'id="turn-\d+-answer">(.*?)</div>', caught_up, re.DOTALL)
    assert partial is not None
    so_far = html.unescape(partial.group(1))
    assert so_far
    assert answer.startswith(so_far)
    assert so_far + _text(followed) == answer  # the late page misses nothing, doubles nothing
    assert (turn.input_tokens, turn.output_tokens) == (1200, 40)
    assert turn.cost_usd == Decimal("0.004200")  # 1200 × $3 + 40 × $15 per million
    saved = page_client.get(url).content.decode()
    assert "Answering…" not in saved
    assert answer in saved
    assert "$0.0042" in saved


def test_an_invalid_question_is_refused_beside_the_input(
    committed_world: World, worker_queue: str
) -> None:
    from agents.services import MAX_INPUT_CHARS

    with schema_context(committed_world.workspace_a.schema_name):
        conversation = _conversation(committed_world, _agent(committed_world))
    headers = _headers(committed_world.owner)

    async def scenario() -> tuple[str, str, bool]:
        ws = _socket(headers, conversation.pk)
        assert (await ws.connect())[0]
        await ws.receive_from(timeout=WAIT)
        await ws.send_to(text_data=_question("   "))
        empty = await ws.receive_from(timeout=WAIT)
        await ws.send_to(text_data=_question("x" * (MAX_INPUT_CHARS + 1)))
        too_long = await ws.receive_from(timeout=WAIT)
        quiet = await ws.receive_nothing(timeout=0.5)
        await ws.disconnect()
        return empty, too_long, quiet

    empty, too_long, quiet = async_to_sync(scenario)()
    assert 'id="chat-form"' in empty
    assert "field--invalid" in empty
    assert "Write a question first." in empty
    assert f"A question can be at most {MAX_INPUT_CHARS} characters" in too_long
    assert quiet  # no turn started
    with schema_context(committed_world.workspace_a.schema_name):
        assert not ConversationTurn.objects.exists()


def test_a_refused_turn_ends_as_failed_with_the_message_shown(
    committed_world: World, worker_queue: str
) -> None:
    ModelPrice.objects.create(
        provider="offline", model="demo", input_per_mtok=Decimal(100), output_per_mtok=Decimal(100)
    )
    with schema_context(committed_world.workspace_a.schema_name):
        WorkspaceBudget.objects.create(monthly_cap_usd=Decimal("0.01"))
        conversation = _conversation(committed_world, _agent(committed_world))
    headers = _headers(committed_world.owner)

    async def scenario() -> list[str]:
        ws = _socket(headers, conversation.pk)
        assert (await ws.connect())[0]
        await ws.receive_from(timeout=WAIT)
        await ws.send_to(text_data=_question("Hello?"))
        messages = await _until(ws, _final)
        await ws.disconnect()
        return messages

    final = async_to_sync(scenario)()[-1]
    assert 'data-status="failed"' in final
    assert "Answering…" not in final
    assert "Refused before calling offline/demo" in final
    assert 'role="alert"' in final
    with schema_context(committed_world.workspace_a.schema_name):
        assert ConversationTurn.objects.get().status == ConversationTurn.Status.FAILED


@pytest.mark.parametrize("who", ["outsider", "anonymous", "other member", "other workspace"])
def test_a_conversation_socket_refuses_anyone_who_may_not_see_it(
    committed_world: World, who: str
) -> None:
    with schema_context(committed_world.workspace_a.schema_name):
        agent = _agent(committed_world)
        owners = _conversation(committed_world, agent)
    user, slug = {
        "outsider": (committed_world.outsider, "alpha"),
        "anonymous": (None, "alpha"),
        "other member": (committed_world.member, "alpha"),
        "other workspace": (committed_world.outsider, "bravo"),  # its own slug, A's id
    }[who]
    headers = _headers(user)

    async def scenario() -> tuple[bool, int | str | None]:
        ws = _socket(headers, owners.pk, slug=slug)
        connected, code = await ws.connect()
        await ws.disconnect()
        return connected, code

    assert async_to_sync(scenario)() == (False, 4404)


def test_an_owner_may_watch_but_not_continue_a_members_conversation(
    committed_world: World,
) -> None:
    with schema_context(committed_world.workspace_a.schema_name):
        members = _conversation(
            committed_world, _agent(committed_world), user=committed_world.member
        )
    headers = _headers(committed_world.owner)

    async def scenario() -> tuple[str, str]:
        ws = _socket(headers, members.pk)
        assert (await ws.connect())[0]
        first = await ws.receive_from(timeout=WAIT)
        await ws.send_to(text_data=_question("Let me in"))
        reply = await ws.receive_from(timeout=WAIT)
        await ws.disconnect()
        return first, reply

    first, reply = async_to_sync(scenario)()
    assert 'id="turns"' in first
    assert "No conversation of yours with that id" in reply
    with schema_context(committed_world.workspace_a.schema_name):
        assert not ConversationTurn.objects.exists()
