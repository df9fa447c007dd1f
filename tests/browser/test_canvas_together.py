"""Two members on the same workflow's canvas (two browser contexts): each sees the other there
and the step they have open, and a save by one appears on the other's canvas without a reload.

Served by the whole ASGI application (`asgi_live_server`), so the canvas's websocket opens; the
canvases' polling endpoint is cut off (every GET of it fails), so what arrives can only have
been pushed, and arrives without waiting for a polling interval."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Browser, Route, expect

from tests.helpers.browser import signed_in
from tests.helpers.personas import World, access_of
from tests.helpers.workflows import owners_workflow
from workflows import services
from workflows.models import Workflow

pytestmark = pytest.mark.browser

START: dict[str, Any] = {
    "schema_version": 1,
    "steps": [{"id": "start", "type": "transform", "name": "Start", "config": {"value": "go"}}],
    "edges": [],
}


@pytest.fixture
def workflow(committed_world: World) -> Workflow:
    return owners_workflow(committed_world, "Shared flow", START)


def _no_polling(route: Route) -> None:
    if route.request.method == "GET":
        route.abort()
    else:
        route.continue_()


def test_two_members_see_each_other_and_each_others_saves(
    committed_world: World,
    asgi_live_server: Any,
    browser: Browser,
    workflow: Workflow,
    tmp_path: Path,
) -> None:
    world = committed_world
    owner = signed_in(browser, world.owner, asgi_live_server.url, 1280).new_page()
    member = signed_in(browser, world.member, asgi_live_server.url, 1280).new_page()
    errors: list[str] = []
    for page in (owner, member):
        page.set_default_timeout(15_000)
        page.set_default_navigation_timeout(60_000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.route(re.compile(rf"/workflows/{workflow.pk}/canvas/\?"), _no_polling)
    owner.goto(f"/w/alpha/workflows/{workflow.pk}/")
    member.goto(f"/w/alpha/workflows/{workflow.pk}/?step=start")
    for page in (owner, member):
        expect(page.locator(".wf-canvas")).to_have_attribute("data-live", "push")

    # Presence: each canvas names the other, and the step the member has open is marked.
    expect(owner.locator("[data-presence]")).to_contain_text("member@alpha.test (on start)")
    expect(owner.locator('.wf-node[data-step="start"]')).to_have_attribute(
        "data-peer", "member@alpha.test"
    )
    expect(member.locator("[data-presence]")).to_contain_text("owner@alpha.test")

    # The member adds a step from the palette (keyboard: focus a type, Enter).
    member.locator('[data-add-type="transform"]').focus()
    member.keyboard.press("Enter")
    expect(member.locator(".wf-canvas")).to_have_attribute("data-base", "2")

    # The owner's canvas follows without a reload.
    expect(owner.locator('.wf-node[data-step="transform_1"]')).to_be_visible()
    expect(owner.locator(".wf-canvas")).to_have_attribute("data-base", "2")
    expect(owner.locator("[data-canvas-status]")).to_contain_text("Someone saved version 2")
    expect(owner.locator("#wf-header")).to_contain_text("draft v2")
    owner.screenshot(path=str(tmp_path / "together-owner-1280.png"), full_page=True)

    # Typing in the side panel is never thrown away: a save meanwhile only offers a reload.
    owner.locator('.wf-node[data-step="start"]').click()
    expect(owner.locator("#builder-panel #step-title")).to_have_text("Start")
    owner.locator("#builder-panel input[name=name]").fill("Begin here")
    with schema_context(world.workspace_a.schema_name):
        services.version_save(
            access=access_of(world.member, world.workspace_a),
            workflow=workflow,
            definition={**START, "steps": [{**START["steps"][0], "name": "Go"}]},
            allow_incomplete=True,
        )
    status = owner.locator("[data-canvas-status]")
    expect(status).to_contain_text("Someone saved version 3")
    expect(status.get_by_role("button", name="Reload")).to_be_visible()
    expect(owner.locator("#builder-panel input[name=name]")).to_have_value("Begin here")
    assert errors == []
