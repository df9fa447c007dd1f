"""A member of many workspaces in a real browser: the switcher lists a few and leads to the
paged, searchable list of all of them, on a desk and on a phone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tenants.models import Membership, Role, Workspace
from tests.helpers.browser import signed_in
from tests.helpers.personas import World

pytestmark = pytest.mark.browser


def test_switcher_and_the_list_of_all_workspaces(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path
) -> None:
    world = committed_world
    teams = Workspace.objects.bulk_create(
        Workspace(schema_name=f"ws_sw_{i}", name=f"Team {i:02d}", slug=f"sw-team-{i:02d}")
        for i in range(60)
    )
    Membership.objects.bulk_create(
        Membership(user=world.owner, workspace=team, role=Role.MEMBER) for team in teams
    )
    for width in (1280, 390):
        page = signed_in(browser, world.owner, live_server.url, width).new_page()
        page.goto("/w/alpha/")
        page.get_by_label("Switch workspace, current: Alpha Inc").click()
        all_link = page.get_by_role("link", name="All 61 workspaces · find one")
        expect(all_link).to_be_visible()
        page.screenshot(path=str(tmp_path / f"switcher-{width}.png"))
        all_link.click()
        expect(page.get_by_text("Page 1 of 3 · 61 workspaces")).to_be_visible()
        page.screenshot(path=str(tmp_path / f"workspaces-{width}.png"), full_page=True)
        page.get_by_label("Find a workspace").fill("team 42")
        page.get_by_role("button", name="Search").click()
        expect(page.locator(".workspace-card__name")).to_have_text(["Team 42"])
        page.get_by_role("link", name="Clear").click()
        page.get_by_role("link", name="Next").click()
        expect(page.get_by_text("Page 2 of 3 · 61 workspaces")).to_be_visible()
        page.context.close()
