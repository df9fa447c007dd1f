"""Long unbroken names never push a page sideways: a workspace, an agent, a workflow, a
listing and its publisher each named with as many characters as their field allows and no space
to break at, on the main pages, on a desk (1280 px) and on a phone (390 px)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django_tenants.utils import schema_context
from playwright.sync_api import Browser

from accounts.models import User
from agents.models import Agent, AgentRun
from agents.runs.executor import execute_run
from agents.services import agent_create, agent_run_start
from marketplace import services
from marketplace.models import Category, Listing, Publisher
from tenants.models import Workspace
from tests.helpers.browser import signed_in
from tests.helpers.personas import World, access_of
from workflows.services import workflow_create

pytestmark = pytest.mark.browser


def unbroken(prefix: str, length: int) -> str:
    """`length` characters without a space, hyphen or other break opportunity."""
    return (prefix + "X" * length)[:length]


# The innermost elements reaching past the window's right edge (not those inside a box that
# scrolls sideways by design, such as the phone's tab bar), to say what overflows.
_OFFENDERS = """() => {
  const limit = window.innerWidth;
  const scrolls = (el) => {
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== "visible") return true;
    }
    return false;
  };
  const wide = [...document.querySelectorAll("body *")].filter(
    (el) => el.getBoundingClientRect().right > limit + 1 && el.checkVisibility() && !scrolls(el)
  );
  return wide
    .filter((el) => !wide.some((other) => other !== el && el.contains(other)))
    .slice(0, 4)
    .map((el) => el.tagName.toLowerCase() + "." + [...el.classList].join("."));
}"""


def overflow(page: Any) -> str:
    """What makes the document wider than the window ("" when nothing does)."""
    extra: int = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if extra <= 0:
        return ""
    return f"{extra}px too wide: {', '.join(page.evaluate(_OFFENDERS))}"


def test_long_unbroken_names_do_not_widen_the_main_pages(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path
) -> None:
    world = committed_world
    owner = world.owner
    workspace = world.workspace_a
    Workspace.objects.filter(pk=workspace.pk).update(name=unbroken("Workspace", 80))
    workspace.refresh_from_db()
    access = access_of(owner, workspace)
    Category.objects.create(slug="support", name="Customer support", icon="💬")
    staff = User.objects.create_superuser(email="mod@platform.test", password="x")
    with schema_context(workspace.schema_name):
        agent = agent_create(
            access=access,
            name=unbroken("Agent", Agent._meta.get_field("name").max_length or 80),
            model="offline:demo",
            system_prompt="Say hello.",
            description=unbroken("Description", 300),
        )
        workflow = workflow_create(
            access=access,
            name=unbroken("Workflow", 80),
            definition={
                "schema_version": 1,
                "inputs": {"name": {"type": "string", "required": True}},
                "steps": [
                    {"id": "greet", "type": "transform", "config": {"value": "Hi {{ input.name }}"}}
                ],
                "output": {"text": "{{ steps.greet }}"},
            },
        )
        run = agent_run_start(access=access, agent_id=agent.pk, input=unbroken("Input", 400))
        execute_run(run.pk)
        assert AgentRun.objects.get(pk=run.pk).status == "succeeded"
    version = services.listing_publish(
        access=access,
        kind="agent",
        source_id=agent.pk,
        title=unbroken("Listing", 100),
        summary=unbroken("Summary", 200),
        description=unbroken("About", 600) + "\n\nGreets people.",
        category_slug="support",
        tags=[unbroken("tag", 30)],
        icon="🧾",
    )
    services.version_approve(user=staff, version=version)
    Publisher.objects.filter(pk=version.listing.publisher_id).update(
        display_name=unbroken("Publisher", 80)
    )
    listing = Listing.objects.get(pk=version.listing_id)
    slug = workspace.slug
    pages = {
        "dashboard": reverse("workspace_dashboard", kwargs={"workspace_slug": slug}),
        "workspaces": reverse("workspace_list"),
        "members": reverse("members", kwargs={"workspace_slug": slug}),
        "settings": reverse("workspace_settings", kwargs={"workspace_slug": slug}),
        "agents": reverse("agent_list", kwargs={"workspace_slug": slug}),
        "agent": reverse("agent_detail", kwargs={"workspace_slug": slug, "agent_id": agent.pk}),
        "agent-runs": reverse("agent_run_list", kwargs={"workspace_slug": slug}),
        "agent-run": reverse("agent_run_detail", kwargs={"workspace_slug": slug, "run_id": run.pk}),
        "workflows": reverse("workflow_list", kwargs={"workspace_slug": slug}),
        "workflow": reverse(
            "workflow_detail", kwargs={"workspace_slug": slug, "workflow_id": workflow.pk}
        ),
        "workflow-run-start": reverse(
            "workflow_run_start", kwargs={"workspace_slug": slug, "workflow_id": workflow.pk}
        ),
        "usage": reverse("usage", kwargs={"workspace_slug": slug}),
        "marketplace": reverse("marketplace"),
        "search": reverse("marketplace") + "?q=greets",
        "category": reverse("marketplace") + "?category=support",
        "listing": reverse("marketplace_listing", kwargs={"slug": listing.slug}),
        "publisher": reverse("marketplace_publisher", kwargs={"slug": listing.publisher.slug}),
        "workspace-marketplace": reverse("marketplace_workspace", kwargs={"workspace_slug": slug}),
        "publish": reverse("marketplace_publish", kwargs={"workspace_slug": slug}),
    }
    failures = []
    for width in (1280, 390):
        context = signed_in(browser, owner, live_server.url, width)
        page = context.new_page()
        for name, url in pages.items():
            response = page.goto(url)
            assert response is not None, (name, url)
            assert response.status == 200, (name, url)
            page.wait_for_load_state("networkidle")  # htmx fills some cards after load
            page.screenshot(path=str(tmp_path / f"{name}-{width}.png"), full_page=True)
            if problem := overflow(page):
                failures.append(f"{name} at {width}px: {problem}")
        # the switcher menu, open
        page.goto(pages["dashboard"])
        page.locator("summary.dropdown__trigger").first.click()
        page.screenshot(path=str(tmp_path / f"switcher-{width}.png"))
        if problem := overflow(page):
            failures.append(f"switcher at {width}px: {problem}")
        context.close()
    assert failures == [], "\n".join(failures)
