"""A workflow's "Offer as an MCP tool" in a real browser, at desktop and phone widths: a
builder ticks it in Details and saves; a viewer sees the choice without a form; no sideways
scroll. Screenshots kept under the test's tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Browser

from tenants.models import Membership, Role
from tests.helpers.browser import signed_in
from tests.helpers.personas import World, make_user
from tests.helpers.workflows import flow, owners_workflow, transform
from workflows.models import Workflow


@pytest.mark.parametrize("width", [1280, 390])
def test_a_builder_offers_a_workflow_as_an_mcp_tool_and_a_viewer_sees_it(
    committed_world: World, live_server: Any, browser: Browser, width: int, tmp_path: Path
) -> None:
    workflow = owners_workflow(committed_world, "Write Post", flow([transform("a", "done")], []))
    url = f"/w/alpha/workflows/{workflow.pk}/"
    context = signed_in(browser, committed_world.owner, live_server.url, width=width)
    page = context.new_page()
    page.goto(url)
    box = page.get_by_label("Offer as an MCP tool")
    box.scroll_into_view_if_needed()
    assert not box.is_checked()
    box.check()
    page.get_by_role("button", name="Save details").click()
    page.get_by_text("Details saved.").wait_for()
    assert page.get_by_label("Offer as an MCP tool").is_checked()
    page.get_by_label("Offer as an MCP tool").scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / f"workflow-mcp-owner-{width}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    context.close()
    with schema_context(committed_world.workspace_a.schema_name):
        assert Workflow.objects.get(pk=workflow.pk).mcp_exposed

    viewer = make_user(f"viewer{width}@alpha.test")
    Membership.objects.create(user=viewer, workspace=committed_world.workspace_a, role=Role.VIEWER)
    context = signed_in(browser, viewer, live_server.url, width=width)
    page = context.new_page()
    page.goto(url)
    shown = page.get_by_text("Offered as an MCP tool")
    shown.scroll_into_view_if_needed()
    assert shown.is_visible()
    assert page.get_by_label("Offer as an MCP tool").count() == 0
    page.screenshot(path=str(tmp_path / f"workflow-mcp-viewer-{width}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    context.close()
