"""The workflow builder in a real browser (Debian's chromium through Playwright): open a step
from the diagram, edit it, add a step through the type picker, and use it on a phone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Browser, Page, expect

from tests.helpers.browser import signed_in
from tests.helpers.personas import World, access_of
from workflows import services
from workflows.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.browser


DEFINITION: dict[str, Any] = {
    "schema_version": 1,
    "inputs": {"ticket": {"type": "string", "required": True}},
    "steps": [
        {"id": "classify", "type": "transform", "name": "Classify", "config": {"value": "x"}},
        {"id": "is_urgent", "type": "condition", "config": {"expression": "len(input.ticket) > 5"}},
        {"id": "page", "type": "transform", "name": "Page on-call", "config": {"value": "page"}},
        {"id": "reply", "type": "transform", "name": "Reply", "config": {"value": "reply"}},
    ],
    "edges": [
        {"from": "classify", "to": "is_urgent"},
        {"from": "is_urgent", "to": "page", "branch": "true"},
        {"from": "is_urgent", "to": "reply", "branch": "false"},
    ],
}


@pytest.fixture
def workflow(committed_world: World) -> Workflow:
    with schema_context(committed_world.workspace_a.schema_name):
        return services.workflow_create(
            access=access_of(committed_world.owner, committed_world.workspace_a),
            name="Ticket triage",
            definition=DEFINITION,
        )


def _versions(world: World, workflow: Workflow) -> list[WorkflowVersion]:
    with schema_context(world.workspace_a.schema_name):
        return list(WorkflowVersion.objects.filter(workflow=workflow).order_by("number"))


def test_edit_a_step_and_add_one_from_the_diagram(
    committed_world: World, live_server: Any, browser: Browser, workflow: Workflow, tmp_path: Path
) -> None:
    context = signed_in(browser, committed_world.owner, live_server.url, 1280)
    page: Page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"/w/alpha/workflows/{workflow.pk}/")

    # Clicking a node opens its panel in place (htmx), with the step's settings.
    page.locator('.wf-node[data-step="page"]').click()
    panel = page.locator("#builder-panel")
    expect(panel.locator("#step-title")).to_have_text("Page on-call")
    expect(page).to_have_url(f"{live_server.url}/w/alpha/workflows/{workflow.pk}/?step=page")
    expect(page.locator('.wf-node[data-step="page"]')).to_have_class(
        "wf-node wf-node--transform is-selected"
    )

    # An invalid value is refused beside its field; nothing is saved.
    panel.locator("input[name=id]").fill("9 bad id")
    panel.get_by_role("button", name="Save", exact=True).click()
    expect(panel.locator(".field--invalid")).to_contain_text("starting with a letter")
    assert len(_versions(committed_world, workflow)) == 1

    # A valid edit makes version 2, a draft; the diagram shows the new name.
    panel.locator("input[name=id]").fill("page")
    panel.locator("input[name=name]").fill("Page the on-call engineer")
    panel.get_by_role("button", name="Save", exact=True).click()
    expect(panel).to_contain_text("Saved as version 2")
    expect(page.locator('.wf-node[data-step="page"] .wf-node__name')).to_have_text(
        "Page the on-call engine…"
    )
    expect(page.locator("#diagram-title")).to_contain_text("draft")

    # Add a step: the type picker swaps the form for that type's fields.
    page.get_by_role("link", name="Add step").click()
    # wait until htmx has swapped in the add form and settled (its change listener attached)
    expect(panel.get_by_role("button", name="Add", exact=True)).to_be_visible()
    expect(page.locator(".htmx-added, .htmx-swapping, .htmx-settling")).to_have_count(0)
    panel.locator("select[name=type]").select_option("condition")
    expect(panel.locator("input[name=cfg_expression]")).to_be_visible()
    panel.locator("select[name=type]").select_option("transform")
    expect(panel.locator("textarea[name=cfg_value]")).to_be_visible()
    panel.locator("input[name=id]").fill("log")
    panel.locator("textarea[name=cfg_value]").fill("logged")
    panel.locator("select[name=after]").select_option("reply")
    panel.get_by_role("button", name="Add & publish").click()
    expect(panel).to_contain_text("Saved as version 3 (published)")
    expect(page.locator('.wf-node[data-step="log"]')).to_be_visible()
    assert page.locator(".wf-edge").count() == 4

    versions = _versions(committed_world, workflow)
    assert [v.number for v in versions] == [1, 2, 3]
    assert {"from": "reply", "to": "log"} in versions[-1].definition["edges"]

    page.screenshot(path=str(tmp_path / "builder.png"), full_page=True)
    assert errors == []
    context.close()


def test_builder_on_a_phone_scrolls_the_diagram_not_the_page(
    committed_world: World, live_server: Any, browser: Browser, workflow: Workflow
) -> None:
    context = signed_in(browser, committed_world.owner, live_server.url, 390)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"/w/alpha/workflows/{workflow.pk}/?step=reply")

    page_width = page.evaluate("document.documentElement.scrollWidth")
    assert page_width <= 390
    canvas = page.locator(".wf-canvas")
    sizes = canvas.evaluate("c => [c.scrollWidth, c.clientWidth]")
    assert sizes[0] > sizes[1]  # two branches side by side are wider than a phone
    diagram_box = canvas.bounding_box()
    panel_box = page.locator("#builder-panel").bounding_box()
    assert diagram_box is not None
    assert panel_box is not None
    assert panel_box["y"] >= diagram_box["y"] + diagram_box["height"]  # stacked under it
    expect(page.locator("#builder-panel textarea[name=cfg_value]")).to_be_visible()
    context.close()


def test_the_header_and_run_follow_what_was_just_saved(
    committed_world: World, live_server: Any, browser: Browser, workflow: Workflow, tmp_path: Path
) -> None:
    context = signed_in(browser, committed_world.owner, live_server.url, 1280)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_navigation_timeout(60_000)  # the first page of a cold server, under load
    page.goto(f"/w/alpha/workflows/{workflow.pk}/?step=reply")
    header = page.locator("#wf-header")
    expect(header).to_contain_text("active v1")
    run = header.get_by_role("link", name="Run v1")

    # An htmx save: the header's badges and Run follow without a reload.
    panel = page.locator("#builder-panel")
    panel.locator("textarea[name=cfg_value]").fill("we are looking into it")
    panel.get_by_role("button", name="Save", exact=True).click()
    expect(panel).to_contain_text("Saved as version 2")
    expect(header).to_contain_text("draft v2")
    run = header.get_by_role("link", name="Run v2")
    expect(run).to_have_attribute("href", f"/w/alpha/workflows/{workflow.pk}/run/?version=2")
    expect(page.locator(".wf-tabs")).to_have_count(1)

    # Removing the only edge into reply is saved as a draft that says what is missing.
    panel.get_by_role("button", name="Remove the edge is_urgent to reply").click()
    expect(panel.locator(".wf-issues--draft")).to_contain_text(
        "Version 3 cannot be published or run until this problem is fixed"
    )
    expect(page.locator('.wf-node[data-step="reply"]')).to_have_class(
        "wf-node wf-node--transform is-selected has-problem"
    )
    expect(header).to_contain_text("draft v3")
    page.screenshot(path=str(tmp_path / "draft.png"), full_page=True)

    # Run goes to that version, which cannot run yet: the form says why.
    header.get_by_role("link", name="Run v3").click()
    expect(page.locator("#run-start-title")).to_contain_text("Inputs of version 3")
    expect(page.locator("#run-start .alert")).to_contain_text(
        "Version 3 cannot run until this problem"
    )
    expect(page.get_by_role("button", name="Start run")).to_be_disabled()
    page.screenshot(path=str(tmp_path / "run-start.png"), full_page=True)
    assert errors == []
    context.close()

    # On a phone: the marked draft and its problem box.
    phone = signed_in(browser, committed_world.owner, live_server.url, 390)
    small = phone.new_page()
    small.set_default_timeout(15_000)
    small.goto(f"/w/alpha/workflows/{workflow.pk}/")
    expect(small.locator(".wf-issues--draft")).to_be_visible()
    assert small.evaluate("document.documentElement.scrollWidth") <= 390
    small.screenshot(path=str(tmp_path / "draft-phone.png"), full_page=True)
    phone.close()
