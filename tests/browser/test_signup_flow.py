"""One journey through a real browser (Debian's chromium driven by Playwright):
sign up → confirm the email → create a workspace → invite a teammate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core import mail
from playwright.sync_api import Browser, Page, expect

from tenants.models import Invitation, Membership, Role
from tests.helpers.personas import PASSWORD, World

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def test_sign_up_create_workspace_and_invite(
    committed_world: World, live_server, page: Page, tmp_path: Path
) -> None:
    base = live_server.url

    # Sign up.
    page.goto(f"{base}/accounts/signup/")
    page.fill("input[name=email]", "founder@newco.test")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.locator("main form button[type=submit]").click()
    expect(page.locator("body")).to_contain_text("confirm", ignore_case=True)

    # Confirm through the link in the (console/locmem) email.
    link = re.search(r"https?://[^/\s]+(/accounts/confirm-email/\S+/)", mail.outbox[-1].body)
    assert link, mail.outbox[-1].body
    page.goto(base + link.group(1))

    # With no workspace yet, the user is asked to create one.
    expect(page).to_have_url(re.compile(r"/workspaces/new/$"))
    page.fill("input[name=name]", "NewCo Support")
    page.fill("input[name=slug]", "newco-support")
    page.locator("main form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/w/newco-support/$"))
    expect(page.locator("body")).to_contain_text("NewCo Support")

    # Invite a teammate from the members page (HTMX swaps the panel in place).
    page.goto(f"{base}/w/newco-support/members/")
    invite = page.locator("form[action$='/members/invite/']")
    invite.locator("input[name=email]").fill("teammate@newco.test")
    invite.locator("select[name=role]").select_option("admin")
    invite.locator("button[type=submit]").click()
    expect(page.locator("#members-panel")).to_contain_text("teammate@newco.test")

    screenshot = tmp_path / "members-after-invite.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000

    invitation = Invitation.objects.get(email="teammate@newco.test")
    assert invitation.role == Role.ADMIN
    assert invitation.workspace.slug == "newco-support"
    assert Membership.objects.get(workspace__slug="newco-support").user.email == (
        "founder@newco.test"
    )
    assert any("teammate@newco.test" in m.to for m in mail.outbox)
