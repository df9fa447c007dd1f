"""The Privacy page and the workspace's Export / delete page in chromium at 1280 and 390 px:
nothing pushes the page sideways, an export's row turns into a Download button without a
reload once a worker built it (HTMX polling), and a deleted workspace shows its clear page.
Screenshots land in PRIVACY_SCREENSHOTS (or the test's tmp_path)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from privacy import services
from privacy.models import ExportJob
from tests.helpers.browser import signed_in
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.browser

_EXTRA_WIDTH = "document.documentElement.scrollWidth - window.innerWidth"


def test_privacy_pages_on_a_phone_and_a_desk(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path, settings: Any
) -> None:
    settings.PRIVACY_EXPORT_ROOT = tmp_path / "exports"
    shots = Path(os.environ.get("PRIVACY_SCREENSHOTS", tmp_path))
    world = committed_world
    for width in (1280, 390):
        context = signed_in(browser, world.owner, live_server.url, width=width)
        page = context.new_page()
        page.goto("/privacy/")
        page.get_by_role("button", name="Request an export").click()
        expect(page.get_by_role("status").first).to_be_visible()
        page.screenshot(path=str(shots / f"privacy-building-{width}.png"), full_page=True)
        job = ExportJob.objects.filter(requested_by=world.owner).order_by("-pk").first()
        assert job is not None
        services.export_build(job_id=job.pk)  # what the worker does
        expect(page.get_by_role("link", name="Download").first).to_be_visible(timeout=10_000)
        assert page.evaluate(_EXTRA_WIDTH) <= 0
        page.screenshot(path=str(shots / f"privacy-{width}.png"), full_page=True)

        page.goto("/w/alpha/settings/data/")
        expect(page.get_by_role("heading", name="Export / delete workspace")).to_be_visible()
        page.get_by_label("Type the workspace address to confirm").fill("wrong")
        page.get_by_role("button", name="Delete workspace").click()
        expect(page.get_by_text("Type the workspace address, alpha, to confirm.")).to_be_visible()
        assert page.evaluate(_EXTRA_WIDTH) <= 0
        page.screenshot(path=str(shots / f"workspace-data-{width}.png"), full_page=True)
        context.close()

    services.workspace_deletion_request(
        access=access_of(world.owner, world.workspace_a), confirm="alpha"
    )
    try:
        for width in (1280, 390):
            context = signed_in(browser, world.member, live_server.url, width=width)
            page = context.new_page()
            page.goto("/w/alpha/")
            expect(
                page.get_by_role("heading", name="Alpha Inc is scheduled for deletion")
            ).to_be_visible()
            assert page.evaluate(_EXTRA_WIDTH) <= 0
            page.screenshot(path=str(shots / f"pending-deletion-{width}.png"), full_page=True)
            context.close()
    finally:
        services.workspace_restore(workspace=world.workspace_a, by=world.owner)
