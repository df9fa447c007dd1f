"""*Test this step* in a real browser (Debian's chromium through Playwright): the step panel
loads the sample form in place, a test answers in place (no reload), and a sample that is not
JSON is named beside the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Browser, Page, expect

from tests.helpers.browser import signed_in
from tests.helpers.personas import World
from tests.helpers.workflows import owners_workflow
from workflows.models import Workflow, WorkflowRun

pytestmark = pytest.mark.browser

DEFINITION: dict[str, Any] = {
    "schema_version": 1,
    "inputs": {"name": {"type": "string", "required": True}},
    "steps": [
        {"id": "greet", "type": "transform", "config": {"value": {"text": "Hi {{ input.name }}"}}},
        {"id": "shout", "type": "transform", "config": {"value": "{{ upper(steps.greet.text) }}"}},
    ],
    "edges": [{"from": "greet", "to": "shout"}],
}


@pytest.fixture
def workflow(committed_world: World) -> Workflow:
    return owners_workflow(committed_world, "Greeter", DEFINITION)


@pytest.mark.parametrize("width", [1280, 390])
def test_a_step_is_tested_in_place(
    committed_world: World,
    live_server: Any,
    browser: Browser,
    workflow: Workflow,
    tmp_path: Path,
    width: int,
) -> None:
    context = signed_in(browser, committed_world.owner, live_server.url, width)
    page: Page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"/w/alpha/workflows/{workflow.pk}/?step=shout")
    marker = page.evaluate("() => (window.__notReloaded = true)")
    assert marker is True

    region = page.locator("#step-test")
    region.get_by_role("link", name="Test…").click()
    sample = region.locator("textarea[name=sample]")
    expect(sample).to_be_visible()
    expect(region).to_contain_text("No run yet")
    assert '"greet": null' in sample.input_value()

    sample.fill("{not json")
    region.get_by_role("button", name="Test step").click()
    expect(region.locator(".field--invalid")).to_contain_text("This is not JSON")

    page.locator("#step-test textarea[name=sample]").fill(
        '{"input": {"name": "Ada"}, "steps": {"greet": {"text": "hi ada"}}}'
    )
    page.locator("#step-test").get_by_role("button", name="Test step").click()
    result = page.locator("#step-test-result")
    expect(result).to_contain_text("Succeeded")
    expect(result).to_contain_text('"HI ADA"')
    expect(result).to_contain_text("0 in · 0 out")
    assert page.evaluate("() => window.__notReloaded") is True  # answered in place
    page.screenshot(path=str(tmp_path / f"step-test-{width}.png"), full_page=True)
    with schema_context(committed_world.workspace_a.schema_name):
        assert not WorkflowRun.objects.exists()
    assert errors == []
