"""Every response carries a strict Content-Security-Policy (scripts from our origin only, no
inline script, no eval) and a Permissions-Policy, in every mode; and no template relies on
what that policy refuses. tests/browser/test_csp.py loads the pages in chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from core.security_headers import content_security_policy
from tests.helpers.personas import World, logged_in

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR) / "templates"


def _policy(header: str) -> dict[str, list[str]]:
    directives = (part.strip().split() for part in header.split(";") if part.strip())
    return {d[0]: d[1:] for d in directives}


@pytest.mark.parametrize(
    "url", ["/", "/accounts/login/", "/admin/login/", "/api/v1/", "/no-such-page/", "/healthz"]
)
def test_every_response_carries_the_policies(url: str) -> None:
    response = Client().get(url)
    policy = _policy(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "camera=()" in response["Permissions-Policy"]
    assert "geolocation=()" in response["Permissions-Policy"]


def test_signed_in_pages_carry_them_too(world: World) -> None:
    response = logged_in(world.owner).get(f"/w/{world.workspace_a.slug}/")
    assert response.status_code == 200
    assert "'unsafe-inline'" not in _policy(response["Content-Security-Policy"])["script-src"]


def test_an_operators_cdn_is_added_to_the_sources_not_to_connections() -> None:
    policy = _policy(content_security_policy("https://cdn.example.com"))
    assert policy["script-src"] == ["'self'", "https://cdn.example.com"]
    assert policy["connect-src"] == ["'self'"]


def test_forms_may_be_redirected_to_stripes_hosted_pages_and_the_emulators_only(
    client: Client, settings: Any
) -> None:
    """Upgrade, Manage payment and payouts setup post to us and are redirected to Stripe's
    hosted pages; browsers apply form-action to that redirect."""
    settings.STRIPE_API_BASE = "https://api.stripe.com"
    real = _policy(client.get("/accounts/login/")["Content-Security-Policy"])["form-action"]
    assert real == [
        "'self'",
        "https://checkout.stripe.com",
        "https://billing.stripe.com",
        "https://connect.stripe.com",
    ]
    settings.STRIPE_API_BASE = "http://127.0.0.1:59545"  # the test-mode emulator
    emulated = _policy(client.get("/accounts/login/")["Content-Security-Policy"])["form-action"]
    assert emulated == [*real, "http://127.0.0.1:59545"]


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)
STYLE_ELEMENT = re.compile(r"<style[\s>]", re.I)


@pytest.mark.parametrize(
    "path", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: str(p.relative_to(TEMPLATES))
)
def test_no_template_needs_what_the_policy_refuses(path: Path) -> None:
    text = path.read_text()
    assert not INLINE_SCRIPT.search(text), "inline <script>: move it to static/js"
    assert not INLINE_HANDLER.search(text), "inline event handler: use a data attribute"
    assert not STYLE_ELEMENT.search(text), "<style> element: move it to static/css"
