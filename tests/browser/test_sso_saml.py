"""SAML single sign-on in a real browser (Debian's chromium through Playwright): the owner's
settings page with the SAML form (screenshots at 1280 and 390 wide to `tmp_path` or
SCREENSHOT_DIR), then a person of the verified domain signs in. The browser's requests to the
IdP's origin are answered by the fake IdP (tests/fakes/saml_idp.py) through Playwright's
routing, with the auto-submitting form a real IdP sends: a cross-site POST to our ACS URL,
which is what SameSite cookies make hard and allauth's two-step ACS handles."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Route, expect

from tenants.models import EmailDomain, Membership, WorkspaceSignIn
from tests.fakes.saml_idp import FakeSamlIdp
from tests.helpers.browser import signed_in
from tests.helpers.personas import World

pytestmark = pytest.mark.browser


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_saml_settings_page_and_sign_in(
    committed_world: World, live_server: Any, browser: Browser, shots: Path
) -> None:
    base = live_server.url
    a = committed_world.workspace_a
    idp = FakeSamlIdp()
    WorkspaceSignIn.objects.create(
        workspace=a,
        display_name="Alpha SAML",
        kind="saml",
        saml_entity_id=idp.entity_id,
        saml_sso_url=idp.sso_url,
        saml_x509cert=idp.cert_pem,
    )
    EmailDomain.objects.create(
        workspace=a, domain="alpha.test", token="t", verified_at=timezone.now()
    )

    for width in (1280, 390):
        context = signed_in(browser, committed_world.owner, base, width)
        page = context.new_page()
        page.goto(f"{base}/w/alpha/settings/sign-in/")
        expect(page.locator("#saml-acs-url")).to_have_text(
            f"{base}/accounts/saml/workspace-{a.pk}/acs/"
        )
        expect(page.locator("#saml-cert-stored")).to_contain_text("CN=Fake SAML IdP")
        page.screenshot(path=str(shots / f"sso-saml-settings-{width}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        context.close()

    def answer_at_idp(route: Route) -> None:
        fields = idp.respond(route.request.url, email="erin@alpha.test")
        inputs = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
            for name, value in fields.items()
        )
        route.fulfill(
            content_type="text/html",
            body=f'<form method="post" action="{idp.acs_url}">{inputs}</form>'
            "<script>document.forms[0].submit()</script>",
        )

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route(re.compile(r"^https://idp\.test/"), answer_at_idp)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{base}/accounts/login/")
    page.get_by_role("link", name="Sign in with single sign-on (SSO)").click()
    page.fill("input[name=email]", "erin@alpha.test")
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Continue").click()  # allauth's confirmation, then the IdP
    expect(page).to_have_url(re.compile(r"/w/alpha/$"))
    assert Membership.objects.filter(user__email="erin@alpha.test", workspace=a).exists()
    context.close()
