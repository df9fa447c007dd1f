"""The marketplace journey in a real browser: a creator publishes an agent, staff approve it in
the admin, another workspace finds it by searching, installs it, runs it and reviews it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Browser, expect

from accounts.models import User
from agents.models import Agent, AgentRun
from agents.runs.executor import execute_run
from agents.services import agent_create
from marketplace.models import Category, Install, Listing, Review
from tests.helpers.browser import signed_in
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.browser


def test_publish_moderate_install_run_review(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path
) -> None:
    world = committed_world
    Category.objects.create(slug="support", name="Customer support", icon="💬")
    staff = User.objects.create_superuser(email="mod@platform.test", password="x")
    with schema_context(world.workspace_a.schema_name):
        agent_create(
            access=access_of(world.owner, world.workspace_a),
            name="Reply drafter",
            model="offline:demo",
            system_prompt="Draft a polite reply to the customer's email.",
        )

    # 1. the creator publishes from their workspace
    creator = signed_in(browser, world.owner, live_server.url)
    page = creator.new_page()
    page.goto("/w/alpha/marketplace/publish/")
    page.get_by_label("What to publish").select_option(label="Agent · Reply drafter")
    page.get_by_label("Title").fill("Email reply drafter")
    page.get_by_label("Summary").fill("Drafts polite answers to customer emails.")
    page.get_by_label("Category").select_option("support")
    page.get_by_label("Tags").fill("email, support")
    page.get_by_role("button", name="Send for review").click()
    expect(page.locator(".toast")).to_contain_text("sent for review")
    expect(page.get_by_text("Waiting for review")).to_be_visible()

    # 2. staff approve it in the admin's moderation queue
    moderator = signed_in(browser, staff, live_server.url)
    admin = moderator.new_page()
    admin.goto("/admin/marketplace/listingversion/")
    admin.get_by_role("link", name="Email reply drafter", exact=False).first.click()
    admin.get_by_label("Approve").check()
    admin.locator("input[type=submit][name=_save]").click()
    listing = Listing.objects.get(title="Email reply drafter")
    assert listing.is_public

    # 3. another workspace finds it by searching (as you type) and installs it
    buyer = signed_in(browser, world.outsider, live_server.url)
    shop = buyer.new_page()
    shop.goto("/marketplace/")
    shop.get_by_label("Search").fill("answer customer emails")
    # (the front page's sections list it too: wait for the results to replace them)
    expect(shop.locator(".mk-count")).to_contain_text("answer customer emails")
    expect(shop.locator("#market-results .mk-card")).to_have_count(1)
    # the URL follows the search, so it can be shared
    expect(shop).to_have_url(re.compile(r"/marketplace/\?q=answer%20customer%20emails"))
    shop.get_by_role("link", name="Email reply drafter").click()
    shop.get_by_role("button", name="Install in Bravo Ltd").click()
    expect(shop.locator(".toast")).to_contain_text("installed in Bravo Ltd")
    install = Install.objects.get(workspace=world.workspace_b)

    # 4. it runs in bravo (a worker would run it; here inline) …
    with schema_context(world.workspace_b.schema_name):
        copy = Agent.objects.get(pk=install.object_id)
        assert copy.current_version is not None
        run = AgentRun.objects.create(
            agent=copy, version=copy.current_version, input="Where is my order?"
        )
        assert execute_run(run.pk) == AgentRun.Status.SUCCEEDED

    # 5. … so bravo may review it; the card shows the figures
    shop.goto(f"/marketplace/l/{listing.slug}/")
    expect(shop.get_by_text("1 run across workspaces")).to_be_visible()
    shop.get_by_label("Rating").select_option("4")
    shop.get_by_label("Your review").fill("Good first drafts.")
    shop.get_by_role("button", name="Publish review").click()
    expect(shop.locator(".mk-review")).to_contain_text("Good first drafts.")
    assert Review.objects.get().rating == 4
    shop.screenshot(path=str(tmp_path / "listing.png"), full_page=True)
    for context in (creator, moderator, buyer):
        context.close()
