"""The pages work under the Content-Security-Policy: chromium loads each one and reports no
CSP violation and no script error (anonymous pages, a workspace owner's pages, the admin and
the API docs, the workflow builder), and the behaviour moved out of inline handlers still works."""

from __future__ import annotations

from typing import Any

from django_tenants.utils import schema_context
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.helpers.browser import signed_in
from tests.helpers.personas import World, access_of
from workflows.library import templates
from workflows.library.prepare import workflow_from_template

ANONYMOUS = ["/", "/accounts/login/", "/accounts/signup/", "/marketplace/", "/api/docs/"]
OWNER = [
    "/w/alpha/",
    "/w/alpha/members/",
    "/w/alpha/api-keys/",
    "/w/alpha/audit/",
    "/w/alpha/settings/",
    "/w/alpha/agents/",
    "/w/alpha/agents/new/",
    "/w/alpha/agents/runs/",
    "/w/alpha/workflows/",
    "/w/alpha/workflows/new/",
    "/w/alpha/workflows/templates/",
    "/w/alpha/workflows/import/",
    "/w/alpha/knowledge/",
    "/w/alpha/conversations/",
    "/w/alpha/outbound/",
    "/w/alpha/marketplace/",
    "/w/alpha/usage/",
    "/w/alpha/providers/",
    "/w/alpha/models/",
    "/workspaces/new/",
    "/admin/",
    "/admin/marketplace/listing/",
    "/admin/accounts/user/",
]


class Watch:
    """CSP violations and script errors a page reports."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.problems.append(message.text)


def _visit(page: Page, watch: Watch, urls: list[str]) -> list[str]:
    seen = []
    for url in urls:
        response = page.goto(url, wait_until="load")
        assert response is not None, url
        assert response.status < 400, (url, response.status)
        seen += [f"{url}: {problem}" for problem in watch.problems]
        watch.problems.clear()
    return seen


def test_pages_load_without_csp_violations(
    committed_world: World, live_server: Any, browser: Browser
) -> None:
    anonymous = browser.new_context(base_url=live_server.url)
    page = anonymous.new_page()
    page.set_default_timeout(60_000)
    problems = _visit(page, Watch(page), ANONYMOUS)
    expect(page.locator("#swagger-ui")).to_contain_text("Agent Market")  # Swagger UI started
    anonymous.close()

    owner = committed_world.owner
    owner.is_staff = owner.is_superuser = True
    owner.save(update_fields=["is_staff", "is_superuser"])
    with schema_context(committed_world.workspace_a.schema_name):
        workflow = workflow_from_template(
            access=access_of(owner, committed_world.workspace_a), key=templates()[0].key
        )
    builder = f"/w/alpha/workflows/{workflow.pk}/"
    context = signed_in(browser, owner, live_server.url)
    page = context.new_page()
    page.set_default_timeout(60_000)
    problems += _visit(page, Watch(page), [*OWNER, builder])
    context.close()
    assert problems == []


def test_confirmations_dismissals_and_slug_suggestions_work_without_inline_script(
    committed_world: World, live_server: Any, browser: Browser
) -> None:
    context = signed_in(browser, committed_world.owner, live_server.url)
    page = context.new_page()
    page.set_default_timeout(60_000)
    watch = Watch(page)

    # A name suggests the workspace's address.
    page.goto("/workspaces/new/")
    page.get_by_label("Name").fill("Rocket Science")
    expect(page.locator("#id_slug")).to_have_value("rocket-science")

    # Removing an allowed host asks first; saying no keeps it, saying yes removes it.
    page.goto("/w/alpha/outbound/")
    page.locator("#id_host").fill("api.example.com")
    page.get_by_role("button", name="Add host").click()
    row = page.locator("tr", has_text="api.example.com")
    expect(row).to_be_visible()
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Remove api.example.com").click()
    expect(row).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Remove api.example.com").click()
    expect(page.locator("tr", has_text="api.example.com")).to_have_count(0)

    # The notice after it can be dismissed.
    toast = page.locator(".toast").first
    if toast.count():
        toast.get_by_role("button", name="Dismiss notification").click()
        expect(page.locator(".toast")).to_have_count(0)
    assert watch.problems == []
    context.close()
