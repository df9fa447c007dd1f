"""A secret shown once (a new API key) can be copied with one click (static/js/copy.js)."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Browser, expect

from tests.helpers.browser import signed_in
from tests.helpers.personas import World


def test_copy_button_puts_the_new_key_on_the_clipboard(
    committed_world: World, live_server: Any, browser: Browser
) -> None:
    context = signed_in(browser, committed_world.owner, live_server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/w/alpha/api-keys/")
    page.get_by_label("Name").fill("Zapier")
    page.locator("label.check").first.click()
    page.locator("#create-key").get_by_role("button", name="Create key").click()

    secret = page.locator("#new-secret").inner_text()
    assert len(secret) > 20
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#copy-secret")).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    expect(page.locator("#copy-secret")).to_have_text("Copy", timeout=5000)  # label resets
    assert errors == []
    context.close()
