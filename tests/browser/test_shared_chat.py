"""Shared chats in Debian's chromium (docs/embed.md): a visitor chats on the public page,
reloads and sees their history, another visitor does not; the widget on a customer's site
under a strict CSP opens the chat in a frame there, and the frame is refused on a site that
is not allowed; the backend-minted token reaches the frame without an API key in the page;
the owner reads what visitors asked; screenshots of the settings page, the visitors'
conversations, the public page and the host page at 1280 and 390."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django_tenants.utils import schema_context
from playwright.sync_api import Browser, BrowserContext, expect

from agents import services as agent_services
from agents.embed import services, tokens
from agents.models import ChatShare
from tenants import services as tenant_services
from tenants.permissions import Perm
from tests.fakes.host_site import HostSite
from tests.helpers.browser import signed_in
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.browser


def _shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("EMBED_SCREENSHOTS", str(tmp_path)))
    where.mkdir(parents=True, exist_ok=True)
    return where


def _visitor(browser: Browser, base: str, width: int = 1280) -> BrowserContext:
    return browser.new_context(
        viewport={"width": width, "height": 900 if width > 500 else 844}, base_url=base
    )


def _ask(scope: Any, question: str) -> None:
    scope.get_by_label("Your message").fill(question)
    scope.get_by_role("button", name="Send").click()
    expect(scope.locator(".embed-msg--visitor").last).to_have_text(question)
    expect(scope.locator("#embed-chat")).to_have_attribute("data-state", "idle", timeout=30_000)


def test_visitors_chat_on_the_page_and_through_the_widget(
    committed_world: World, live_server: Any, browser: Browser, worker_queue: str, tmp_path: Path
) -> None:
    world = committed_world
    shots = _shots(tmp_path)
    owner = access_of(world.owner, world.workspace_a)
    _, api_secret = tenant_services.api_key_create(access=owner, name="site", scopes=[Perm.RUN])
    with (
        HostSite(chat_server=live_server.url) as allowed,
        HostSite(chat_server=live_server.url) as other,
    ):
        with schema_context(world.workspace_a.schema_name):
            agent = agent_services.agent_create(
                access=owner, name="Garden helper", model="offline:demo"
            )
            share = services.share_create(access=owner, agent_id=agent.pk, title="Acme garden help")
            share = services.share_update(
                access=owner,
                share_id=share.pk,
                greeting="Hi! Ask me about plants.",
                accent_colour="#0f766e",
                allowed_origins=[allowed.url],
            )
        page_path = reverse("share_page", kwargs={"space": "alpha", "share_key": share.key})
        frame_url = live_server.url + reverse(
            "share_frame", kwargs={"space": "alpha", "share_key": share.key}
        )
        widget = live_server.url + "/static/js/embed-widget.js"
        allowed.show(widget_src=widget, chat_url=frame_url)
        other.show(widget_src=widget, chat_url=frame_url)

        # A visitor chats on the public page, reloads, and finds their conversation.
        first = _visitor(browser, live_server.url)
        bodies: list[str] = []
        first.on("response", lambda r: bodies.append(_text(r)))
        page = first.new_page()
        page.goto(page_path)
        expect(page.get_by_role("heading", name="Acme garden help")).to_be_visible()
        expect(page.get_by_text("Hi! Ask me about plants.")).to_be_visible()
        _ask(page, "When should I water tomatoes?")
        expect(page.locator(".embed-msg--agent").last).not_to_have_text("Answering…")
        page.reload()
        expect(page.locator(".embed-msg--visitor")).to_have_text(["When should I water tomatoes?"])
        page.screenshot(path=str(shots / "public-chat-1280.png"), full_page=True)

        # Another visitor (another browser profile) starts empty.
        second = _visitor(browser, live_server.url, 390)
        other_page = second.new_page()
        other_page.goto(page_path)
        expect(other_page.get_by_text("Hi! Ask me about plants.")).to_be_visible()
        expect(other_page.locator("#embed-chat")).to_have_attribute("data-state", "idle")
        expect(other_page.locator(".embed-msg--visitor")).to_have_count(0)
        other_page.screenshot(path=str(shots / "public-chat-390.png"), full_page=True)

        # The widget on the customer's own site, under a strict CSP: bubble, then the chat.
        errors: list[str] = []
        for width in (1280, 390):
            host = _visitor(browser, allowed.url, width)
            host.on("response", lambda r: bodies.append(_text(r)))
            host_page = host.new_page()
            errors.clear()
            host_page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            host_page.goto(allowed.url + "/")
            bubble = host_page.get_by_role("button", name="Chat with Acme")
            expect(bubble).to_be_visible()
            bubble.click()
            chat = host_page.frame_locator("iframe[title='Chat with Acme']")
            expect(chat.get_by_role("heading", name="Acme garden help")).to_be_visible()
            if width == 1280:
                _ask(chat, "Do roses need sun?")
            host_page.screenshot(path=str(shots / f"host-widget-{width}.png"))
            assert not [e for e in errors if "Content Security Policy" in e], errors
            host.close()

        # On a site that is not allowed, the browser refuses to show the chat in the frame.
        refused = _visitor(browser, other.url)
        refused_page = refused.new_page()
        refused_page.goto(other.url + "/")
        with refused_page.expect_event(
            "framenavigated", predicate=lambda f: f != refused_page.main_frame
        ) as navigated:
            refused_page.get_by_role("button", name="Chat with Acme").click()
        blocked = navigated.value
        blocked.wait_for_load_state()
        assert blocked.url.startswith("chrome-error://")  # chromium's page for a refused frame
        assert blocked.locator("#embed-chat").count() == 0
        refused.close()

        # Nothing any visitor's browser received carries the workspace's API key.
        assert all(api_secret not in body for body in bodies)
        assert not any("Authorization" in body and "Bearer" in body for body in bodies)
        first.close()
        second.close()
    _owner_pages(world, browser, live_server.url, share, shots)


def _text(response: Any) -> str:
    try:
        return str(response.text())
    except Exception:  # redirects and aborted loads have no body
        return ""


def _owner_pages(world: World, browser: Browser, base: str, share: ChatShare, shots: Path) -> None:
    for width in (1280, 390):
        context = signed_in(browser, world.owner, base, width)
        page = context.new_page()
        page.goto(f"/w/alpha/shares/{share.pk}/")
        expect(page.get_by_role("heading", name="Acme garden help")).to_be_visible()
        expect(page.get_by_label("Accent colour")).to_have_value("#0f766e")
        page.screenshot(path=str(shots / f"share-settings-{width}.png"), full_page=True)
        page.goto("/w/alpha/shares/")
        page.screenshot(path=str(shots / f"share-list-{width}.png"), full_page=True)
        # What visitors asked, read-only: the list, one conversation, the agent's page link.
        page.goto(f"/w/alpha/shares/{share.pk}/")
        page.get_by_role("link", name="Conversations from the share link").click()
        expect(
            page.get_by_role("heading", name="Conversations from the share link")
        ).to_be_visible()
        expect(page.get_by_text("When should I water tomatoes?")).to_be_visible()
        page.screenshot(path=str(shots / f"share-conversations-{width}.png"), full_page=True)
        page.get_by_role("row").filter(has_text="When should I water tomatoes?").get_by_role(
            "link"
        ).click()
        expect(page.get_by_text("Read-only: only the visitor can continue")).to_be_visible()
        expect(page.locator(".chat-turn__bubble")).to_have_text(["When should I water tomatoes?"])
        page.screenshot(path=str(shots / f"share-conversation-{width}.png"), full_page=True)
        page.goto(f"/w/alpha/agents/{share.agent_id}/")
        expect(
            page.get_by_role("link", name="Conversations from “Acme garden help”")
        ).to_be_visible()
        page.screenshot(path=str(shots / f"agent-shares-{width}.png"), full_page=True)
        context.close()


def test_a_token_from_the_customers_backend_reaches_the_frame(
    committed_world: World, live_server: Any, browser: Browser, worker_queue: str
) -> None:
    world = committed_world
    owner = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent = agent_services.agent_create(
            access=owner, name="Account helper", model="offline:demo"
        )
        share = services.share_create(access=owner, agent_id=agent.pk)
    minted = tokens.token_sign(share=share, end_user_id="customer-7")
    frame_url = live_server.url + reverse(
        "share_frame", kwargs={"space": "alpha", "share_key": share.key}
    )
    widget = live_server.url + "/static/js/embed-widget.js"
    with HostSite(chat_server=live_server.url) as site:
        site.show(widget_src=widget, chat_url=frame_url, end_user_token=minted.token)
        with schema_context(world.workspace_a.schema_name):
            services.share_update(access=owner, share_id=share.pk, allowed_origins=[site.url])
        context = _visitor(browser, site.url)
        page = context.new_page()
        page.goto(site.url + "/")
        page.get_by_role("button", name="Chat with Acme").click()
        chat = page.frame_locator("iframe[title='Chat with Acme']")
        _ask(chat, "What is my plan?")
        context.close()
    with schema_context(world.workspace_a.schema_name):
        conversation = share.conversations.get()
        assert conversation.end_user_id == "customer-7"
