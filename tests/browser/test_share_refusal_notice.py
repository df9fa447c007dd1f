"""The share page of a per-run listing's copy tells the owner why visitors cannot chat, on a
phone (390 px) and a desk (1280 px), without pushing the page sideways. Screenshots land in
the test's tmp_path."""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django_tenants.utils import schema_context
from playwright.sync_api import Browser

from agents.embed import services as embed
from agents.models import Agent
from agents.services import agent_create
from marketplace.models import Category, Listing, ListingVersion, Publisher, Purchase
from tests.fakes import FakeStripe
from tests.helpers.browser import signed_in
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.browser

_EXTRA_WIDTH = "document.documentElement.scrollWidth - window.innerWidth"


def test_the_share_page_says_why_visitors_cannot_chat_with_a_per_run_copy(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path, settings: Any
) -> None:
    world = committed_world
    with FakeStripe() as fake:
        settings.STRIPE_TEST_SECRET_KEY = "sk_test_" + "platform" * 3
        settings.STRIPE_API_BASE = fake.base_url
        category, _ = Category.objects.get_or_create(slug="support", defaults={"name": "Support"})
        publisher = Publisher.objects.create(slug="acme", display_name="Acme")
        listing = Listing.objects.create(
            publisher=publisher,
            category=category,
            kind="agent",
            slug="summariser",
            title="Summariser",
            summary="Sums up.",
            pricing="per_run",
            price_cents=25,
        )
        version = ListingVersion.objects.create(
            listing=listing,
            number=1,
            definition={},
            status=ListingVersion.Status.APPROVED,
            pricing="per_run",
            price_cents=25,
        )
        Purchase.objects.create(
            buyer=world.workspace_b,
            listing=listing,
            version=version,
            publisher=publisher,
            pricing="per_run",
            unit_amount_cents=25,
            fee_percent=Decimal(20),
            status=Purchase.Status.ACTIVE,
        )
        buyer = access_of(world.outsider, world.workspace_b)
        with schema_context(world.workspace_b.schema_name):
            agent = agent_create(access=buyer, name="Summariser", model="offline:demo")
            Agent.objects.filter(pk=agent.pk).update(listing_version_id=version.pk)
            share = embed.share_create(access=buyer, agent_id=agent.pk, title="Help desk")
        url = reverse(
            "share_detail", kwargs={"workspace_slug": world.workspace_b.slug, "share_id": share.pk}
        )

        for width in (390, 1280):
            context = signed_in(browser, world.outsider, live_server.url, width)
            page = context.new_page()
            page.goto(url)
            shot = tmp_path / f"share-refusal-{width}.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("SCREENSHOT_DIR"):
                shutil.copy(shot, os.environ["SCREENSHOT_DIR"])
            assert page.evaluate(_EXTRA_WIDTH) <= 0
            notice = page.locator("#share-refusal")
            assert notice.is_visible()
            assert "only runs are charged" in notice.inner_text()
            context.close()
