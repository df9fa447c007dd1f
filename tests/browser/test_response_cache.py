"""The response cache in a real browser: turning the semantic tier on states its measured
accuracy; a run asked again is answered from the cache (a real Celery worker runs it) and
"Wrong answer?" removes the entry; the chat turn and the usage page show the same, on a desk
and on a phone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Browser, Page, expect

from agents.cache.calibration import semantic_accuracy_statement
from agents.chat import services as chat_services
from agents.models import Agent, CachedResponse, CacheReport, ConversationTurn
from tests.helpers.browser import signed_in
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.browser

QUESTION = "How do I reset my password?"


def _ask(page: Page) -> None:
    page.locator("#run-panel textarea[name=input]").fill(QUESTION)
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#run-panel .run")).to_contain_text("Succeeded", timeout=30_000)


def _answered(turn_id: int) -> ConversationTurn:
    """The turn once the worker has answered it (polled: the worker is another process)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        turn = ConversationTurn.objects.get(pk=turn_id)
        if turn.status != ConversationTurn.Status.STREAMING:
            return turn
        time.sleep(0.1)
    raise AssertionError(f"turn {turn_id} was not answered within 30 s")


def test_semantic_accuracy_cached_run_and_wrong_answer(
    committed_world: World, live_server: Any, browser: Browser, worker_queue: str, tmp_path: Path
) -> None:
    world = committed_world
    context = signed_in(browser, world.owner, live_server.url, 1280)
    page = context.new_page()
    page.set_default_timeout(15_000)

    # Creating an agent: the exact tier is on, the semantic tier off, its accuracy stated.
    page.goto("/w/alpha/agents/new/")
    expect(page.get_by_label("Answer a question asked again from the cache")).to_be_checked()
    semantic = page.get_by_label("Also answer rephrased questions from the cache (semantic tier)")
    expect(semantic).not_to_be_checked()
    expect(page.get_by_text(semantic_accuracy_statement()[:60])).to_be_visible()
    page.screenshot(path=str(tmp_path / "agent-form-1280.png"), full_page=True)
    page.get_by_label("Name").fill("Password helper")
    page.get_by_label("Model", exact=True).select_option("offline:demo")  # a picker
    semantic.check()
    page.get_by_role("button", name="Create agent").click()
    expect(page.locator(".toast").filter(has_text="Semantic cache on.")).to_be_visible()

    # The same question twice: the second answer comes from the cache.
    _ask(page)
    _ask(page)
    panel = page.locator("#run-panel")
    expect(panel).to_contain_text("From cache")
    page.screenshot(path=str(tmp_path / "cached-run-1280.png"), full_page=True)
    panel.get_by_role("button", name="Wrong answer?").click()
    expect(panel).to_contain_text("Reported as wrong")
    with schema_context(world.workspace_a.schema_name):
        assert CachedResponse.objects.count() == 0
        assert CacheReport.objects.count() == 1

    # A chat answered twice by the worker, read on a phone: the cached turn offers the button.
    with schema_context(world.workspace_a.schema_name):
        access = access_of(world.owner, world.workspace_a)
        agent = Agent.objects.get(name="Password helper")
        conversation = chat_services.conversation_start(
            access=access, agent_id=agent.pk, question=QUESTION
        )
        _answered(conversation.turns.get().pk)
        second = chat_services.turn_start(
            access=access, conversation_id=conversation.pk, question=QUESTION
        )
        assert _answered(second.pk).cache_hit
    phone = signed_in(browser, world.owner, live_server.url, 390).new_page()
    phone.goto(f"/w/alpha/conversations/{conversation.pk}/")
    cached_turn = phone.locator(f"#turn-{second.pk}")
    expect(cached_turn).to_contain_text("From cache")
    phone.screenshot(path=str(tmp_path / "chat-390.png"), full_page=True)
    cached_turn.get_by_role("button", name="Wrong answer?").click()
    expect(phone.locator(f"#turn-{second.pk}")).to_contain_text("Reported as wrong")

    for width in (1280, 390):
        usage = signed_in(browser, world.owner, live_server.url, width).new_page()
        usage.goto("/w/alpha/usage/")
        expect(usage.get_by_text("Cache hit rate")).to_be_visible()
        if width > 500:  # stat hints are hidden on phones
            expect(usage.get_by_text("2 reported as wrong")).to_be_visible()
        usage.screenshot(path=str(tmp_path / f"usage-{width}.png"), full_page=True)
    phone.goto("/w/alpha/agents/new/")
    phone.screenshot(path=str(tmp_path / "agent-form-390.png"), full_page=True)
    context.close()
