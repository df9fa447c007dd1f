"""The workflow canvas in a real browser (Debian's chromium through Playwright): a branching
flow built by drag and drop (a condition with both branches, an approval), an edge deleted,
undone and redone, a step copied and pasted, a connection made with the keyboard only, then a
run watched on the same canvas; and the canvas on a phone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Browser, expect

from tests.helpers.browser import signed_in
from tests.helpers.canvas import centre, drag, latest_version, node, out_port, saved
from tests.helpers.personas import World, access_of
from tests.helpers.workflows import drain, owners_workflow
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
    return owners_workflow(committed_world, "Canvas flow", START)


def _edges(world: World, workflow: Workflow) -> list[dict[str, str]]:
    return list(latest_version(world, workflow.pk).definition["edges"])


def test_build_a_branching_flow_on_the_canvas_and_watch_it_run(
    committed_world: World, live_server: Any, browser: Browser, workflow: Workflow, tmp_path: Path
) -> None:
    world = committed_world
    context = signed_in(browser, world.owner, live_server.url, 1280)
    page = context.new_page()
    page.set_viewport_size({"width": 1280, "height": 1300})  # the whole flow in view, to drop on
    page.set_default_timeout(15_000)
    page.set_default_navigation_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"/w/alpha/workflows/{workflow.pk}/")
    expect(page.locator("[data-canvas-tools]")).to_be_visible()
    canvas = page.locator(".wf-canvas").bounding_box()
    assert canvas is not None
    left, top = canvas["x"], canvas["y"]

    # Drag a condition from the palette and drop it under the start step.
    drag(page, centre(page, '[data-add-type="condition"]'), (left + 300, top + 200))
    saved(page, 2)
    expect(page.locator(node("condition_1"))).to_be_visible()
    # An approval and two transforms, side by side further down.
    drag(page, centre(page, '[data-add-type="approval"]'), (left + 160, top + 330))
    saved(page, 3)
    drag(page, centre(page, '[data-add-type="transform"]'), (left + 460, top + 330))
    saved(page, 4)
    drag(page, centre(page, '[data-add-type="transform"]'), (left + 160, top + 460))
    saved(page, 5)
    assert [s["id"] for s in latest_version(world, workflow.pk).definition["steps"]] == [
        "start",
        "condition_1",
        "approval_1",
        "transform_1",
        "transform_2",
    ]

    # Wire it by dragging from output ports: the condition's true and false branches.
    drag(page, centre(page, out_port("start")), centre(page, node("condition_1")))
    saved(page, 6)
    drag(page, centre(page, out_port("condition_1", "true")), centre(page, node("approval_1")))
    saved(page, 7)
    drag(page, centre(page, out_port("condition_1", "false")), centre(page, node("transform_1")))
    saved(page, 8)
    assert _edges(world, workflow) == [
        {"from": "start", "to": "condition_1"},
        {"from": "condition_1", "to": "approval_1", "branch": "true"},
        {"from": "condition_1", "to": "transform_1", "branch": "false"},
    ]

    # Keyboard only: focus the approval, C opens the connect menu, pick "approved → transform_2".
    page.locator(node("approval_1")).focus()
    page.keyboard.press("c")
    menu = page.locator("[data-connect-menu]")
    expect(menu).to_be_visible()
    choice = menu.get_by_role("button", name="approved → transform_2")
    for _ in range(30):  # Tab through the menu to that choice
        if choice.evaluate("b => b === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(choice).to_be_focused()
    page.keyboard.press("Enter")
    saved(page, 9)
    assert {"from": "approval_1", "to": "transform_2", "branch": "approved"} in _edges(
        world, workflow
    )
    # The draft is complete now: no step is marked.
    expect(page.locator(".wf-node.has-problem")).to_have_count(0)

    # Move a step with the keyboard: saved when the keys stop, nothing else changes.
    page.locator(node("transform_1")).focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    saved(page, 10)
    moved = next(
        s
        for s in latest_version(world, workflow.pk).definition["steps"]
        if s["id"] == "transform_1"
    )
    assert moved["position"]["x"] % 8 == 0
    expect(page.locator(node("transform_1"))).to_be_focused()

    # Delete an edge: click it, press Delete; undo brings it back, redo removes it again.
    page.locator('.wf-edge-hit[data-source="condition_1"][data-target="transform_1"]').click()
    expect(page.locator("[data-canvas-status]")).to_contain_text("selected")
    page.keyboard.press("Delete")
    saved(page, 11)
    false_edge = {"from": "condition_1", "to": "transform_1", "branch": "false"}
    assert false_edge not in _edges(world, workflow)
    expect(page.locator(node("transform_1"))).to_have_class(
        "wf-node wf-node--transform has-problem"
    )
    page.keyboard.press("Control+z")
    saved(page, 12)
    assert false_edge in _edges(world, workflow)
    page.keyboard.press("Control+Shift+z")
    saved(page, 13)
    assert false_edge not in _edges(world, workflow)
    page.get_by_role("button", name="Undo").click()
    saved(page, 14)
    assert false_edge in _edges(world, workflow)

    # Copy and paste a step (Shift+click selects without opening the panel), then undo it.
    page.locator(node("transform_2")).click(modifiers=["Shift"])
    expect(page.locator(node("transform_2"))).to_have_attribute("data-picked", "")
    page.keyboard.press("Control+c")
    page.keyboard.press("Control+v")
    saved(page, 15)
    expect(page.locator(node("transform_copy_1"))).to_be_visible()
    expect(page.locator(node("transform_copy_1"))).to_have_attribute("data-picked", "")
    page.screenshot(path=str(tmp_path / "canvas-pasted-1280.png"), full_page=True)
    page.keyboard.press("Control+z")
    saved(page, 16)
    expect(page.locator(node("transform_copy_1"))).to_have_count(0)
    expect(page.locator(".wf-node.has-problem")).to_have_count(0)

    # Clicking a step still opens today's side panel.
    page.locator(node("approval_1")).click()
    expect(page.locator("#builder-panel #step-title")).to_have_text("approval_1")
    page.screenshot(path=str(tmp_path / "canvas-1280.png"), full_page=True)

    # Run the version on screen, then watch its steps on the canvas while the workers work.
    page.locator("#wf-header").get_by_role("link", name="Run v16").click()
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#run-live")).to_be_visible()
    page.goto(f"/w/alpha/workflows/{workflow.pk}/")
    expect(page.locator("[data-run-note]")).to_contain_text("queued")
    with schema_context(world.workspace_a.schema_name):
        drain()
    expect(page.locator(node("start"))).to_have_attribute("data-run-status", "succeeded")
    expect(page.locator(node("condition_1"))).to_have_attribute("data-run-status", "succeeded")
    expect(page.locator(node("approval_1"))).to_have_attribute("data-run-status", "waiting")
    expect(page.locator(node("transform_1"))).to_have_attribute("data-run-status", "skipped")
    expect(page.locator(f"{node('approval_1')} .wf-node__run")).to_have_text("… waiting")
    expect(page.locator("[data-run-note]")).to_contain_text("waiting")
    page.screenshot(path=str(tmp_path / "canvas-run-1280.png"), full_page=True)
    assert errors == []
    context.close()

    # On a phone: the same canvas, readable and pannable, the side panel under it.
    phone = signed_in(browser, world.owner, live_server.url, 390)
    small = phone.new_page()
    small.set_default_timeout(15_000)
    small.goto(f"/w/alpha/workflows/{workflow.pk}/?step=condition_1")
    expect(small.locator(node("approval_1"))).to_have_attribute("data-run-status", "waiting")
    assert small.evaluate("document.documentElement.scrollWidth") <= 390
    sizes = small.locator(".wf-canvas").evaluate("c => [c.scrollWidth, c.clientWidth]")
    assert sizes[0] > sizes[1]  # wider than the phone: it scrolls (pans) inside its box
    expect(small.locator("#builder-panel #step-title")).to_have_text("condition_1")
    small.screenshot(path=str(tmp_path / "canvas-390.png"), full_page=True)
    small.get_by_role("button", name="Fit").click()
    frame = small.locator(".wf-canvas").bounding_box()
    assert frame is not None
    for box in small.locator(".wf-node .wf-node__box").all():
        shape = box.bounding_box()
        assert shape is not None
        assert frame["x"] <= shape["x"]
        assert shape["x"] + shape["width"] <= frame["x"] + frame["width"]
    small.screenshot(path=str(tmp_path / "canvas-390-fit.png"))
    phone.close()


def test_a_stale_canvas_is_refused_with_the_conflict_message_and_a_reload(
    committed_world: World, live_server: Any, browser: Browser, workflow: Workflow
) -> None:
    world = committed_world
    context = signed_in(browser, world.owner, live_server.url, 1280)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.set_default_navigation_timeout(60_000)
    page.goto(f"/w/alpha/workflows/{workflow.pk}/")
    expect(page.locator("[data-canvas-tools]")).to_be_visible()
    # Someone else saves version 2 meanwhile.
    with schema_context(world.workspace_a.schema_name):
        services.version_save(
            access=access_of(world.owner, world.workspace_a),
            workflow=workflow,
            definition={**START, "steps": [{**START["steps"][0], "name": "Begin"}]},
        )
    page.locator('[data-add-type="llm"]').focus()
    page.keyboard.press("Enter")
    status = page.locator("[data-canvas-status]")
    expect(status).to_contain_text("Someone saved version 2 since you opened version 1")
    assert len(_edges(world, workflow)) == 0
    status.get_by_role("button", name="Reload").click()
    expect(page.locator(".wf-canvas")).to_have_attribute("data-base", "2")
    expect(page.locator(node("start"))).to_contain_text("Begin")
    context.close()
