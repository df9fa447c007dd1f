"""A builder's journey through a real browser (Debian's chromium via Playwright) with a real
Celery worker: create a knowledge base, upload files, watch them become ready without
reloading (HTMX polling), then try a search and see cited passages. Also at phone width."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from agents.knowledge.demo import DEMO_DOCS
from tests.helpers.documents import make_pdf
from tests.helpers.personas import PASSWORD, World

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def _page(browser: Browser, width: int) -> Page:
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.set_default_timeout(15_000)
    return page


def _sign_in(page: Page, base_url: str, email: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").click()
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))


def test_upload_watch_progress_and_search(
    committed_world: World, worker_queue: str, live_server, browser: Browser, tmp_path: Path
) -> None:
    page = _page(browser, 1280)
    _sign_in(page, live_server.url, committed_world.owner.email)

    page.goto(f"{live_server.url}/w/alpha/knowledge/")
    expect(page.locator("main")).to_contain_text("No knowledge bases yet")
    page.screenshot(path=str(tmp_path / "knowledge-empty.png"), full_page=True)

    page.locator("main").get_by_role("link", name="New knowledge base").first.click()
    page.fill("input[name=name]", "Help center")
    page.fill("textarea[name=description]", "Answers for customers.")
    page.get_by_role("button", name="Create knowledge base").click()
    expect(page.locator("h1")).to_have_text("Help center")

    files = [
        ("refunds.md", "text/markdown", (DEMO_DOCS / "refunds.md").read_bytes()),
        ("plans.md", "text/markdown", (DEMO_DOCS / "plans.md").read_bytes()),
        ("terms.pdf", "application/pdf", make_pdf(["Terms.", "Refunds follow the policy."])),
    ]
    page.set_input_files(
        "input[name=file]",
        [{"name": name, "mimeType": kind, "buffer": data} for name, kind, data in files],
    )
    page.get_by_role("button", name="Upload").click()
    documents = page.locator("#documents")
    expect(documents).to_contain_text("terms.pdf")
    # The worker processes them; the panel refreshes itself until every one is ready.
    expect(documents.locator(".badge--success")).to_have_count(3, timeout=60_000)
    expect(documents).not_to_have_attribute("hx-trigger", "every 1s")

    page.fill("input[name=q]", "How long do refunds take?")
    page.get_by_role("button", name="Search").click()
    results = page.locator("#search-results")
    expect(results).to_contain_text("[1] refunds.md, How long refunds take")
    expect(page).to_have_url(re.compile(r"\?q=How"))
    page.screenshot(path=str(tmp_path / "knowledge-detail.png"), full_page=True)

    page.get_by_role("link", name="← Knowledge").click()
    expect(page.locator("main table")).to_contain_text("Help center")
    page.screenshot(path=str(tmp_path / "knowledge-list.png"), full_page=True)

    phone = _page(browser, 390)
    _sign_in(phone, live_server.url, committed_world.member.email)
    phone.goto(page.url)
    phone.get_by_role("link", name="Help center").click()
    expect(phone.locator("#documents")).to_contain_text("refunds.md")
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at 390px"
    phone.screenshot(path=str(tmp_path / "knowledge-detail-390.png"), full_page=True)
    phone.goto(f"{live_server.url}/w/alpha/knowledge/new/")
    phone.get_by_role("button", name="Create knowledge base").click()
    expect(phone.locator("#id_name_error")).to_contain_text("required")
    phone.screenshot(path=str(tmp_path / "knowledge-new-390.png"), full_page=True)
