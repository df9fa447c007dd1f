"""The agent page's A2A section in a real browser, wide and phone-sized: the owner exposes the
agent and the card's address appears."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.helpers.a2a import make_agent
from tests.helpers.browser import signed_in
from tests.helpers.personas import World

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("width", [1280, 390])
def test_the_owner_exposes_an_agent_from_its_page(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path, width: int
) -> None:
    agent = make_agent(committed_world, exposed=False)
    page = signed_in(browser, committed_world.owner, live_server.url, width).new_page()
    page.goto(f"/w/alpha/agents/{agent.pk}/")
    section = page.get_by_role("region", name="Agent-to-agent (A2A)")
    expect(section).to_contain_text("Not reachable over A2A.")
    section.get_by_role("button", name="Expose over A2A").click()
    section = page.get_by_role("region", name="Agent-to-agent (A2A)")
    expect(section).to_contain_text(f"/a2a/w/alpha/agents/{agent.pk}/.well-known/agent-card.json")
    expect(section.get_by_role("button", name="Stop exposing over A2A")).to_be_visible()
    section.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / f"a2a-{width}.png"), full_page=False)
    # Nothing wider than the viewport at phone width.
    assert page.evaluate("document.documentElement.scrollWidth") <= width
