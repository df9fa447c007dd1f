"""In a real browser, on a desk and on a phone: the no-provider banner and first-run
checklist on a new workspace's overview, and the agent runs list with a run's tool steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Browser, expect

from agents import services
from agents.runs.executor import execute_run
from tests.helpers.browser import signed_in
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.browser


def test_banner_checklist_and_agent_runs(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path
) -> None:
    world = committed_world
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent = services.agent_create(
            access=access,
            name="Invoice checker with a rather long name for narrow screens",
            model="offline:demo",
            tools=["calculator"],
        )
        for text in ("What is 1200 * 1.2?", "Total of 19.99 + 5.01?", "Say hello"):
            run = services.agent_run_start(access=access, agent_id=agent.pk, input=text)
            execute_run(run.pk)
    for width in (1280, 390):
        page = signed_in(browser, world.owner, live_server.url, width).new_page()
        page.goto("/w/alpha/")
        expect(page.get_by_text("No model provider is configured.")).to_be_visible()
        expect(page.get_by_role("heading", name="Connect a model")).to_be_visible()
        page.screenshot(path=str(tmp_path / f"first-run-{width}.png"), full_page=True)

        page.goto("/w/alpha/agents/runs/")
        expect(page.get_by_role("heading", name="Agent runs")).to_be_visible()
        expect(page.locator("tr[data-run]")).to_have_count(3)
        page.screenshot(path=str(tmp_path / f"agent-runs-{width}.png"), full_page=True)

        page.locator("tr[data-run] td:first-child a").last.click()  # the oldest: a tool step
        expect(page.get_by_role("heading", name="Tool steps")).to_be_visible()
        expect(page.locator('[data-tool="calculator"]')).to_be_visible()
        page.screenshot(path=str(tmp_path / f"agent-run-{width}.png"), full_page=True)
