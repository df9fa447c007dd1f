"""Browser tests: Debian's chromium through Playwright."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.test import Client
from playwright.sync_api import Browser, BrowserContext

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def signed_in(browser: Browser, user: Any, base: str, width: int = 1280) -> BrowserContext:
    """A browser context with `user`'s session (no login form)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(
        viewport={"width": width, "height": 900 if width > 500 else 844}, base_url=base
    )
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": base,
            }
        ]
    )
    return context
