"""Driving the workflow canvas in chromium (tests/browser/test_canvas*.py): where a step or
port is, a mouse drag, waiting for a save, and the latest saved version."""

from __future__ import annotations

from django_tenants.utils import schema_context
from playwright.sync_api import Page, expect

from tests.helpers.personas import World
from workflows.models import WorkflowVersion


def latest_version(world: World, workflow_id: int) -> WorkflowVersion:
    """Workspace A's newest saved version of the workflow."""
    with schema_context(world.workspace_a.schema_name):
        return WorkflowVersion.objects.filter(workflow_id=workflow_id).order_by("-number")[0]


def centre(page: Page, selector: str) -> tuple[float, float]:
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(end[0], end[1], steps=10)
    page.mouse.up()


def saved(page: Page, version: int) -> None:
    """Wait until the canvas shows `version` as saved."""
    expect(page.locator(".wf-canvas")).to_have_attribute("data-base", str(version))
    expect(page.locator("[data-canvas-status]")).to_contain_text(f"version {version}")


def node(step: str) -> str:
    return f'.wf-node[data-step="{step}"]'


def out_port(step: str, port: str = "") -> str:
    """A step's output port: "" for its plain output, else a branch ("true", "approved"...)."""
    return f'{node(step)} .wf-port--out[data-port="{port}"]'


def in_port(step: str) -> str:
    return f"{node(step)} .wf-port--in"
