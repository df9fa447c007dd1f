"""The MCP servers page in a real browser, at desktop and phone widths: no sideways scroll, the
credential's hint only; screenshots kept under the test's tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Browser

from agents.models import McpServerConnection
from tests.helpers.browser import signed_in
from tests.helpers.personas import World

SECRET = "tok-very-secret-9876"


@pytest.mark.parametrize("width", [1280, 390])
def test_the_mcp_servers_page_fits_and_hides_the_credential(
    committed_world: World, live_server: Any, browser: Browser, width: int, tmp_path: Path
) -> None:
    with schema_context(committed_world.workspace_a.schema_name):
        connection = McpServerConnection(name="github", url="https://mcp.example.com/mcp")
        connection.set_credential(SECRET)
        connection.tools = [
            {"name": "search_issues", "description": "Search issues.", "input_schema": {}},
            {"name": "create_issue", "description": "Open an issue.", "input_schema": {}},
        ]
        connection.save()
    context = signed_in(browser, committed_world.owner, live_server.url, width=width)
    page = context.new_page()
    page.goto("/w/alpha/mcp-servers/")
    page.screenshot(path=str(tmp_path / f"mcp-servers-{width}.png"), full_page=True)
    text = page.content()
    assert "2 tools" in page.inner_text("main")
    assert "mcp__github__search_issues" in text
    assert SECRET not in text
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.get_by_label("Server URL").is_visible()
    context.close()
