"""The issue's "done means", in a real browser: a newcomer creates a blank workflow, builds a
branching flow on the canvas by dragging step types from the palette and dragging from output
ports to input ports only (a condition's true/false, an approval's approved/rejected; no
dropdown, no menu), runs it from the builder and watches its steps change on the same canvas,
pushed through the canvas's websocket (the whole ASGI application serves the pages). The run's
model step uses the offline provider; the approval is approved on the run page meanwhile.

Then the other port kinds (a parallel step's one port per branch, a map's body) and the
rubber-band selection, moved together and deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Browser, Page, expect

from agents.models import AliasTarget, ModelAlias
from tests.helpers.browser import signed_in
from tests.helpers.canvas import centre, drag, in_port, latest_version, node, out_port, saved
from tests.helpers.personas import World, access_of
from tests.helpers.workflows import drain, owners_workflow
from workflows import services
from workflows.models import Workflow, WorkflowRun

pytestmark = pytest.mark.browser


def _connect(page: Page, source: str, port: str, target: str, version: int) -> None:
    drag(page, centre(page, out_port(source, port)), centre(page, in_port(target)))
    saved(page, version)


def test_a_newcomer_builds_runs_and_watches_a_branching_flow_on_the_canvas(
    committed_world: World, asgi_live_server: Any, browser: Browser, tmp_path: Path
) -> None:
    world = committed_world
    with schema_context(world.workspace_a.schema_name):  # "default" is the offline model
        alias = ModelAlias.objects.create(name="default")
        AliasTarget.objects.create(alias=alias, position=0, kind="offline", model="demo")
    context = signed_in(browser, world.owner, asgi_live_server.url, 1280)
    page = context.new_page()
    page.set_viewport_size({"width": 1280, "height": 1300})  # the whole flow in view, to drop on
    page.set_default_timeout(15_000)
    page.set_default_navigation_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto("/w/alpha/workflows/new/")
    page.get_by_label("Name").fill("Refund requests")
    page.get_by_role("button", name="Create and open the builder").click()
    expect(page.locator(".wf-canvas")).to_have_attribute("data-live", "push")
    workflow_id = int(page.url.split("/workflows/")[1].split("/")[0])
    canvas = page.locator(".wf-canvas").bounding_box()
    assert canvas is not None
    left, top = canvas["x"], canvas["y"]

    # Five steps dragged from the palette and dropped where they go.
    drops = [
        ("condition", (left + 300, top + 190)),
        ("approval", (left + 160, top + 330)),
        ("transform", (left + 470, top + 330)),
        ("llm", (left + 80, top + 480)),
        ("transform", (left + 300, top + 480)),
    ]
    for version, (kind, at) in enumerate(drops, start=2):
        drag(page, centre(page, f'[data-add-type="{kind}"]'), at)
        saved(page, version)
    ids = ["start", "condition_1", "approval_1", "transform_1", "llm_1", "transform_2"]
    assert [s["id"] for s in latest_version(world, workflow_id).definition["steps"]] == ids
    # The branch ports are labelled before they are wired.
    expect(page.locator(f"{node('condition_1')} .wf-port__text")).to_have_text(["true", "false"])
    expect(page.locator(f"{node('approval_1')} .wf-port__text")).to_have_text(
        ["approved", "rejected"]
    )

    # Wired port to port only.
    _connect(page, "start", "", "condition_1", 7)
    _connect(page, "condition_1", "true", "approval_1", 8)
    _connect(page, "condition_1", "false", "transform_1", 9)
    _connect(page, "approval_1", "approved", "llm_1", 10)
    _connect(page, "approval_1", "rejected", "transform_2", 11)
    assert latest_version(world, workflow_id).definition["edges"] == [
        {"from": "start", "to": "condition_1"},
        {"from": "condition_1", "to": "approval_1", "branch": "true"},
        {"from": "condition_1", "to": "transform_1", "branch": "false"},
        {"from": "approval_1", "to": "llm_1", "branch": "approved"},
        {"from": "approval_1", "to": "transform_2", "branch": "rejected"},
    ]
    expect(page.locator(".wf-node.has-problem")).to_have_count(0)  # complete: it can run
    page.screenshot(path=str(tmp_path / "newcomer-built-1280.png"), full_page=True)

    # Run the version on screen from the builder, then come back to the canvas.
    page.locator("#wf-header").get_by_role("link", name="Run v11").click()
    page.get_by_label("text").fill("A refund for order 42")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#run-live")).to_be_visible()
    run_url = page.url
    page.goto(f"/w/alpha/workflows/{workflow_id}/")
    expect(page.locator(".wf-canvas")).to_have_attribute("data-live", "push")
    expect(page.locator("[data-run-note]")).to_contain_text("queued")

    # The workers work; the canvas follows (pushed: no reload, no polling).
    with schema_context(world.workspace_a.schema_name):
        drain()
    expect(page.locator(node("start"))).to_have_attribute("data-run-status", "succeeded")
    expect(page.locator(node("condition_1"))).to_have_attribute("data-run-status", "succeeded")
    expect(page.locator(node("approval_1"))).to_have_attribute("data-run-status", "waiting")
    expect(page.locator(f"{node('approval_1')} .wf-node__run")).to_have_text("… waiting")
    page.screenshot(path=str(tmp_path / "newcomer-waiting-1280.png"), full_page=True)

    # Approved on the run page, in another tab; the canvas tab follows.
    run_page = context.new_page()
    run_page.set_default_timeout(15_000)
    run_page.goto(run_url)
    run_page.get_by_role("button", name="Approve").click()
    expect(page.locator(node("approval_1"))).to_have_attribute("data-run-status", "succeeded")
    with schema_context(world.workspace_a.schema_name):
        drain()
        run = WorkflowRun.objects.get(workflow_id=workflow_id)
    expect(page.locator(node("llm_1"))).to_have_attribute("data-run-status", "succeeded")
    expect(page.locator(node("transform_1"))).to_have_attribute("data-run-status", "skipped")
    expect(page.locator(node("transform_2"))).to_have_attribute("data-run-status", "skipped")
    expect(page.locator("[data-run-note]")).to_contain_text("succeeded")
    assert run.status == "succeeded"
    page.screenshot(path=str(tmp_path / "newcomer-run-1280.png"), full_page=True)
    assert errors == []
    context.close()

    # On a phone: the same canvas and its run, pannable, the side panel under it.
    phone = signed_in(browser, world.owner, asgi_live_server.url, 390)
    small = phone.new_page()
    small.set_default_timeout(15_000)
    small.goto(f"/w/alpha/workflows/{workflow_id}/?step=approval_1")
    expect(small.locator(node("llm_1"))).to_have_attribute("data-run-status", "succeeded")
    assert small.evaluate("document.documentElement.scrollWidth") <= 390
    expect(small.locator("#builder-panel #step-title")).to_have_text("approval_1")
    small.screenshot(path=str(tmp_path / "newcomer-390.png"), full_page=True)
    small.locator("[data-canvas-tools]").scroll_into_view_if_needed()
    small.screenshot(path=str(tmp_path / "newcomer-390-view.png"))
    small.get_by_role("button", name="Fit").click()
    small.locator(".wf-canvas").screenshot(path=str(tmp_path / "newcomer-390-fit.png"))
    phone.close()


START: dict[str, Any] = {
    "schema_version": 1,
    "steps": [{"id": "start", "type": "transform", "config": {"value": "go"}}],
    "edges": [],
}
PORTS: dict[str, Any] = {
    "schema_version": 1,
    "steps": [
        {
            "id": "start",
            "type": "transform",
            "config": {"value": "go"},
            "position": {"x": 16, "y": 16},
        },
        {"id": "fan", "type": "parallel", "config": {}, "position": {"x": 16, "y": 136}},
        {"id": "a", "type": "transform", "config": {"value": "a"}, "position": {"x": 16, "y": 280}},
        {
            "id": "b",
            "type": "transform",
            "config": {"value": "b"},
            "position": {"x": 232, "y": 280},
        },
    ],
    "edges": [{"from": "start", "to": "fan"}],
}


def test_parallel_branch_ports_the_map_body_port_and_rubber_band_selection(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path
) -> None:
    world = committed_world
    workflow: Workflow = owners_workflow(world, "Ports", START)
    with schema_context(world.workspace_a.schema_name):  # a draft: a and b are not wired yet
        services.version_edit(
            access=access_of(world.owner, world.workspace_a),
            workflow=workflow,
            edit=lambda _latest: PORTS,
            based_on=1,
            allow_incomplete=True,
        )
    page = signed_in(browser, world.owner, live_server.url, 1280).new_page()
    page.set_viewport_size({"width": 1280, "height": 1100})
    page.set_default_timeout(15_000)
    page.goto(f"/w/alpha/workflows/{workflow.pk}/")
    expect(page.locator("[data-canvas-tools]")).to_be_visible()

    # A parallel step: one labelled port per branch, and one more for the next branch.
    expect(page.locator(f"{node('fan')} .wf-port__text")).to_have_text(["1"])
    _connect(page, "fan", "branch 1", "a", 3)
    expect(page.locator(f"{node('fan')} .wf-port__text")).to_have_text(["1", "2"])
    _connect(page, "fan", "branch 2", "b", 4)
    expect(page.locator(f"{node('fan')} .wf-port__text")).to_have_text(["1", "2", "3"])
    assert latest_version(world, workflow.pk).definition["edges"][1:] == [
        {"from": "fan", "to": "a"},
        {"from": "fan", "to": "b"},
    ]

    # A map: its body is a port; a code step dropped on it becomes what the map runs per item.
    canvas = page.locator(".wf-canvas").bounding_box()
    assert canvas is not None
    drag(page, centre(page, '[data-add-type="map"]'), (canvas["x"] + 420, canvas["y"] + 80))
    saved(page, 5)
    drag(page, centre(page, '[data-add-type="code"]'), (canvas["x"] + 420, canvas["y"] + 260))
    saved(page, 6)
    expect(page.locator(f"{node('map_1')} .wf-port__text")).to_have_text(["body", "done"])
    _connect(page, "map_1", "body", "code_1", 7)
    expect(page.locator(node("code_1"))).to_have_count(0)
    steps = {s["id"]: s for s in latest_version(world, workflow.pk).definition["steps"]}
    assert steps["map_1"]["config"]["node"]["type"] == "code"
    page.screenshot(path=str(tmp_path / "ports-1280.png"), full_page=True)

    # Rubber band: Shift+drag a rectangle around a and b, drag one: both move; Delete: both go.
    a, b = page.locator(node("a")).bounding_box(), page.locator(node("b")).bounding_box()
    assert a is not None
    assert b is not None
    page.keyboard.down("Shift")
    drag(page, (a["x"] - 12, a["y"] - 20), (b["x"] + b["width"] + 12, b["y"] + b["height"] + 20))
    page.keyboard.up("Shift")
    expect(page.locator(".wf-node[data-picked]")).to_have_count(2)
    expect(page.locator("[data-canvas-status]")).to_contain_text("2 steps selected")
    before = {
        s["id"]: s["position"] for s in latest_version(world, workflow.pk).definition["steps"]
    }
    start = centre(page, node("a"))  # the status line above the canvas may have grown
    drag(page, start, (start[0], start[1] + 96))
    saved(page, 8)
    after = {s["id"]: s["position"] for s in latest_version(world, workflow.pk).definition["steps"]}
    scale = page.locator(".wf-canvas svg").evaluate("s => s.getScreenCTM().a")  # px per unit
    assert after["a"]["y"] - before["a"]["y"] == pytest.approx(96 / scale, abs=8)  # grid: 8
    assert after["b"]["y"] - before["b"]["y"] == after["a"]["y"] - before["a"]["y"]
    assert (after["a"]["x"], after["b"]["x"]) == (before["a"]["x"], before["b"]["x"])
    assert after["fan"] == before["fan"]
    expect(page.locator(".wf-node[data-picked]")).to_have_count(2)
    page.keyboard.press("Delete")
    saved(page, 9)
    remaining = [s["id"] for s in latest_version(world, workflow.pk).definition["steps"]]
    assert remaining == ["start", "fan", "map_1"]


def _touch_drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """One finger from `start` to `end` (Chromium's own touch input, through CDP)."""
    cdp = page.context.new_cdp_session(page)

    def touch(kind: str, x: float, y: float) -> None:
        points = [] if kind == "touchEnd" else [{"x": x, "y": y}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", *start)
    for i in range(1, 11):
        touch(
            "touchMove",
            start[0] + (end[0] - start[0]) * i / 10,
            start[1] + (end[1] - start[1]) * i / 10,
        )
    touch("touchEnd", *end)
    cdp.detach()


def test_on_a_phone_a_finger_pans_empty_canvas_and_moves_a_step(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path
) -> None:
    world = committed_world
    workflow: Workflow = owners_workflow(world, "Phone", START)
    with schema_context(world.workspace_a.schema_name):
        services.version_edit(
            access=access_of(world.owner, world.workspace_a),
            workflow=workflow,
            edit=lambda _latest: PORTS,
            based_on=1,
            allow_incomplete=True,
        )
    client = signed_in(browser, world.owner, live_server.url, 390)
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        has_touch=True,
        is_mobile=True,
        base_url=live_server.url,
    )
    context.add_cookies(client.cookies())
    client.close()
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"/w/alpha/workflows/{workflow.pk}/")
    canvas = page.locator(".wf-canvas")
    expect(page.locator("[data-canvas-tools]")).to_be_visible()
    canvas.evaluate("c => c.scrollIntoView({block: 'start'})")
    box = canvas.bounding_box()
    assert box is not None
    assert canvas.evaluate("c => c.scrollWidth > c.clientWidth")

    # A finger on empty canvas (below the steps) pans it; nothing is saved.
    empty = (box["x"] + 300, box["y"] + 400)
    _touch_drag(page, empty, (empty[0] - 150, empty[1]))
    expect(canvas).not_to_have_js_property("scrollLeft", 0)
    assert latest_version(world, workflow.pk).number == 2
    # Up and down: the canvas is as tall as its drawing on a phone, so the page scrolls.
    page_top = page.evaluate("window.scrollY")
    _touch_drag(page, empty, (empty[0], empty[1] - 100))
    assert page.evaluate("window.scrollY") > page_top
    canvas.evaluate("c => c.scrollIntoView({block: 'start'})")

    # A finger on a step drags it; a tap opens it in the side panel.
    start = centre(page, node("b"))  # in view now that the canvas is panned
    _touch_drag(page, start, (start[0], start[1] + 120))
    saved(page, 3)
    moved = {s["id"]: s["position"] for s in latest_version(world, workflow.pk).definition["steps"]}
    assert moved["b"]["y"] > 280
    assert moved["a"] == {"x": 16, "y": 280}
    page.locator(node("b")).tap()
    expect(page.locator("#builder-panel #step-title")).to_have_text("b")
    page.screenshot(path=str(tmp_path / "phone-touch-390.png"))
    context.close()
