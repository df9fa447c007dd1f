"""Single sign-on and two-factor in a real browser (Debian's chromium through Playwright): a
person of a verified domain signs in through the workspace's IdP (a loopback OpenID Connect
provider), with the real Content-Security-Policy in force; then turns on two-factor and signs
in with a code. Screenshots (1280 and 390 wide) of the SSO settings page, the two-factor setup
and the two-factor challenge go to `tmp_path` (or SCREENSHOT_DIR)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from core import crypto
from tenants.models import EmailDomain, WorkspaceSignIn
from tests.fakes.oidc_provider import FakeOidcProvider
from tests.helpers.browser import signed_in
from tests.helpers.personas import PASSWORD, World

pytestmark = pytest.mark.browser


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def idp(settings: Any) -> Iterator[FakeOidcProvider]:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    settings.MFA_TOTP_TOLERANCE = 1
    with FakeOidcProvider(client_id="alpha-app", client_secret="alpha-secret-9876") as fake:
        yield fake


def _page(browser: Browser, width: int) -> Page:
    context = browser.new_context(viewport={"width": width, "height": 900 if width > 500 else 844})
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def _shoot(page: Page, shots: Path, name: str, width: int) -> None:
    page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width, name


def test_sign_in_through_the_workspace_idp_then_two_factor(
    committed_world: World, live_server: Any, browser: Browser, idp: FakeOidcProvider, shots: Path
) -> None:
    base = live_server.url
    a = committed_world.workspace_a
    WorkspaceSignIn.objects.create(
        workspace=a,
        display_name="Alpha SSO",
        oidc_server_url=idp.issuer,
        oidc_client_id=idp.client_id,
        oidc_client_secret_encrypted=crypto.encrypt(idp.client_secret),
    )
    EmailDomain.objects.create(
        workspace=a, domain="alpha.test", token="t", verified_at=timezone.now()
    )
    EmailDomain.objects.create(workspace=a, domain="alpha.example", token="pending-token-1234")

    # The owner's settings page, at both widths.
    for width in (1280, 390):
        context = signed_in(browser, committed_world.owner, base, width)
        page = context.new_page()
        page.goto(f"{base}/w/alpha/settings/sign-in/")
        expect(page.locator("h1")).to_have_text("Sign-in & SSO")
        expect(page.locator("body")).to_contain_text("••••9876")
        expect(page.locator("body")).not_to_contain_text(idp.client_secret)
        _shoot(page, shots, "sso-settings", width)
        context.close()

    # A new person of alpha.test signs in through the IdP, from the sign-in page.
    idp.user = {"sub": "idp-7", "email": "dana@alpha.test", "name": "Dana"}
    page = _page(browser, 1280)
    csp_violations: list[str] = []
    page.on(
        "console", lambda m: csp_violations.append(m.text) if "Content Security" in m.text else None
    )
    page.goto(f"{base}/accounts/login/")
    page.get_by_role("link", name="Sign in with single sign-on (SSO)").click()
    page.fill("input[name=email]", "dana@alpha.test")
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Continue").click()  # allauth's confirmation, then the IdP
    expect(page).to_have_url(re.compile(r"/w/alpha/$"))
    assert csp_violations == []

    # Two-factor for a password account: set up (reauthenticating first), then asked at sign-in.
    # At 390 the owner only looks at the setup page; at 1280 the member turns it on.
    for width, person in ((390, committed_world.owner), (1280, committed_world.member)):
        page = _page(browser, width)
        page.goto(f"{base}/accounts/login/")
        page.fill("input[name=login]", person.email)
        page.fill("input[name=password]", PASSWORD)
        page.locator("main form button[type=submit]").click()
        expect(page).to_have_url(re.compile(r"/w/alpha/$"))
        page.goto(f"{base}/accounts/2fa/")
        _shoot(page, shots, "2fa-index", width)
        page.goto(f"{base}/accounts/2fa/totp/activate/")
        page.fill("input[name=password]", PASSWORD)
        page.locator("main form button[type=submit]").click()
        expect(page).to_have_url(re.compile(r"/2fa/totp/activate/"))
        _shoot(page, shots, "2fa-setup", width)
        if person == committed_world.member:
            secret = page.locator("#authenticator_secret").input_value()
            counter = int(time.time()) // 30
            page.fill("input[name=code]", format_hotp_value(hotp_value(secret, counter)))
            page.locator("main form button[type=submit]").click()
            expect(page.locator("body")).to_contain_text("Recovery Codes", ignore_case=True)
            _shoot(page, shots, "2fa-recovery-codes", width)
        page.context.close()

    # The challenge, at both widths.
    for width in (1280, 390):
        page = _page(browser, width)
        page.goto(f"{base}/accounts/login/")
        page.fill("input[name=login]", committed_world.member.email)
        page.fill("input[name=password]", PASSWORD)
        page.locator("main form button[type=submit]").click()
        expect(page).to_have_url(re.compile(r"/2fa/authenticate/"))
        _shoot(page, shots, "2fa-challenge", width)
        page.context.close()
