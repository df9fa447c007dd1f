"""The inbox in a real browser, on a desk and on a phone: the bell's count, notifications of
each kind, an approval decided from the inbox, and the preferences page."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Browser, expect

from notifications.kinds import Kind
from notifications.services import Event, notify
from tests.helpers.browser import signed_in
from tests.helpers.personas import World, access_of
from tests.helpers.workflows import drain, flow, start, step, transform
from workflows.models import WorkflowRun

pytestmark = pytest.mark.browser

APPROVAL = flow(
    [
        transform("draft", "Draft"),
        {
            "id": "review",
            "type": "approval",
            "name": "Legal sign-off",
            "config": {"message": "Send the renewal offer to Acme Corp?"},
        },
        transform("send", "sent"),
    ],
    [("draft", "review"), ("review", "send", "approved")],
)


def _seed(world: World) -> WorkflowRun:
    a = world.workspace_a
    with schema_context(a.schema_name):
        run = start(APPROVAL, access=access_of(world.owner, a))
        drain()
    for key, kind, title, body, url in [
        (
            "f",
            Kind.RUN_FAILED,
            "Workflow run #12 of Weekly report failed",
            "Summarise: the model answered 429 Too Many Requests three times.",
            "/w/alpha/workflows/runs/",
        ),
        (
            "u",
            Kind.USAGE_WARNING,
            "Alpha Inc has used 80% of its plan's runs",
            "Alpha Inc has started 400 of the 500 runs its Team plan includes this period.",
            "/w/alpha/billing/",
        ),
        (
            "m",
            Kind.LISTING_MODERATED,
            "“Invoice chaser” version 2 was sent back: staff request changes",
            "Staff reviewed version 2 of your listing. Reason: add a privacy note.",
            "/w/alpha/marketplace/",
        ),
    ]:
        notify(
            user_ids=[world.owner.pk],
            event=Event(
                kind=kind, dedupe_key=key, title=title, body=body, url=url, workspace_id=a.pk
            ),
        )
    return run


def test_the_inbox_and_preferences_on_a_desk_and_a_phone(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path
) -> None:
    world = committed_world
    run = _seed(world)
    shots = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    for width in (1280, 390):
        page = signed_in(browser, world.owner, live_server.url, width).new_page()
        page.goto("/workspaces/")
        bell = page.get_by_role("link", name="Notifications, 4 unread")
        expect(bell).to_be_visible()
        bell.click()
        expect(page.get_by_role("heading", name="Notifications")).to_be_visible()
        expect(page.get_by_text("Approval waiting: “Legal sign-off”")).to_be_visible()
        expect(page.get_by_role("button", name="Approve")).to_be_visible()
        page.screenshot(path=str(shots / f"inbox-{width}.png"), full_page=True)
        page.locator(".inbox-item").last.screenshot(path=str(shots / f"approval-{width}.png"))
        if width == 390:
            page.get_by_label("Comment (optional)").fill("Looks fine")
            page.get_by_role("button", name="Approve").click()
            expect(page.get_by_text("Approved “review”.")).to_be_visible()
            page.goto("/notifications/")
            expect(page.get_by_role("button", name="Approve")).to_have_count(0)
            expect(page.get_by_role("link", name="Notifications, 3 unread")).to_be_visible()
            page.get_by_role("button", name="Mark all read").click()
            expect(page.get_by_role("link", name="Notifications", exact=True)).to_be_visible()
            page.get_by_role("link", name="Unread").click()
            expect(page.get_by_text("All caught up")).to_be_visible()
            page.screenshot(path=str(shots / f"inbox-empty-{width}.png"), full_page=True)
        page.goto("/notifications/preferences/")
        email = page.get_by_label("Email for replies to my reviews")
        page.screenshot(path=str(shots / f"preferences-{width}.png"), full_page=True)
        if width == 1280:
            expect(email).not_to_be_checked()  # the default for replies: the inbox only
            email.check()
            page.get_by_role("button", name="Save preferences").click()
            expect(page.get_by_text("Notification preferences saved.")).to_be_visible()
            expect(page.get_by_label("Email for replies to my reviews")).to_be_checked()
        page.context.close()
    with schema_context(world.workspace_a.schema_name):
        review = step(run, "review")
        assert review.branch == "approved"
        assert review.decided_by_id == world.owner.pk
        assert review.decision_comment == "Looks fine"
        drain()  # what the workers do next
        run.refresh_from_db()
        assert run.status == "succeeded"
