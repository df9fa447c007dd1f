"""A workflow version's evaluation, the evaluations page with both release gates, and an
install's automatic-upgrade option held back by a failed evaluation, in a browser at 1280 and
390 px: nothing pushes the page sideways. Screenshots land in the test's tmp_path (or
$SCREENSHOT_DIR)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django_tenants.utils import schema_context
from playwright.sync_api import Browser, expect

from accounts.models import User
from agents.services import agent_create, agent_update
from evals import services
from evals.models import Evaluation
from marketplace import auto_upgrade
from marketplace import services as market
from marketplace.models import Category, Listing
from tests.helpers.browser import signed_in
from tests.helpers.personas import World, access_of
from tests.helpers.workflows import drain, flow, transform
from workflows.services import workflow_create

pytestmark = pytest.mark.browser

_EXTRA_WIDTH = "document.documentElement.scrollWidth - window.innerWidth"


def _settle(evaluation_id: int) -> None:
    for _ in range(20):
        if services.evaluation_execute(evaluation_id) != Evaluation.Status.RUNNING:
            return
        drain()


def _workflow_evaluation(world: World) -> int:
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        dataset = services.dataset_import(
            access=access,
            name="Names",
            filename="names.jsonl",
            data=(
                b'{"input": "Ada", "expected": "{\\"text\\": \\"Hello Ada\\"}"}\n'
                b'{"input": "{\\"name\\": \\"Grace Brewster Murray Hopper\\"}"}\n'
                b'{"input": "{\\"nickname\\": \\"Bob\\"}"}\n'
            ),
        )
        suite = services.suite_create(
            access=access,
            name="Greeting suite",
            dataset_id=dataset.pk,
            evaluators_spec=[
                {"kind": "regex", "pattern": "Hello"},
                {"kind": "max_latency", "ms": 60000},
            ],
        )
        workflow = workflow_create(
            access=access,
            name="Greeting flow",
            definition=flow(
                [transform("greet", "Hello {{ input.name }}")],
                [],
                inputs={"name": {"type": "string", "required": True}},
                output={"text": "{{ steps.greet }}"},
            ),
        )
        evaluation = services.evaluation_start(
            access=access, suite_id=suite.pk, workflow_id=workflow.pk
        )
        _settle(evaluation.pk)
        services.gate_policy_set(access=access, require_for_publish=True, require_for_upgrade=True)
        return evaluation.pk


def _held_install(world: World) -> None:
    Category.objects.get_or_create(slug="support", defaults={"name": "Support"})
    staff = User.objects.create_superuser(email="mod@platform.test", password="x")
    alpha = access_of(world.owner, world.workspace_a)
    bravo = access_of(world.outsider, world.workspace_b)
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(access=alpha, name="Helper", model="offline:demo")

    def publish() -> None:
        version = market.listing_publish(
            access=alpha,
            kind="agent",
            source_id=agent.pk,
            title="Helper",
            summary="Helps.",
            category_slug="support",
        )
        market.version_approve(user=staff, version=version)

    with schema_context(world.workspace_a.schema_name):
        services.gate_policy_set(access=alpha, require_for_publish=False)
    publish()
    install = market.install(access=bravo, listing=Listing.objects.get())
    with schema_context(world.workspace_b.schema_name):
        dataset = services.dataset_import(
            access=bravo, name="Smoke", filename="s.jsonl", data=b'{"input": "Say hello"}\n'
        )
        suite = services.suite_create(
            access=bravo,
            name="Smoke",
            dataset_id=dataset.pk,
            evaluators_spec=[{"kind": "regex", "pattern": "never-said"}],
        )
        services.gate_policy_set(access=bravo, require_for_publish=False, require_for_upgrade=True)
    auto_upgrade.auto_upgrade_set(access=bravo, install=install, enabled=True, suite_id=suite.pk)
    with schema_context(world.workspace_a.schema_name):
        agent_update(access=alpha, agent_id=agent.pk, system_prompt="Be brief.")
    publish()
    auto_upgrade.auto_upgrade_sweep()
    with schema_context(world.workspace_b.schema_name):
        services.evaluation_execute(Evaluation.objects.get().pk)
    auto_upgrade.auto_upgrade_sweep()


def test_workflow_evaluation_and_automatic_upgrades_fit_desk_and_phone(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path
) -> None:
    shots = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    evaluation_id = _workflow_evaluation(committed_world)
    _held_install(committed_world)
    detail = reverse(
        "evals_evaluation", kwargs={"workspace_slug": "alpha", "evaluation_id": evaluation_id}
    )
    for width in (1280, 390):
        context = signed_in(browser, committed_world.owner, live_server.url, width=width)
        page = context.new_page()
        page.goto(detail)
        expect(page.get_by_text("on workflow Greeting flow v1")).to_be_visible()
        expect(page.get_by_text("nickname").first).to_be_visible()
        page.screenshot(path=str(shots / f"workflow-evaluation-{width}.png"), full_page=True)
        assert page.evaluate(_EXTRA_WIDTH) <= 0
        page.goto(reverse("evals", kwargs={"workspace_slug": "alpha"}))
        expect(page.locator("#id_workflow")).to_be_visible()
        page.screenshot(path=str(shots / f"evals-gates-{width}.png"), full_page=True)
        assert page.evaluate(_EXTRA_WIDTH) <= 0
        context.close()
        context = signed_in(browser, committed_world.outsider, live_server.url, width=width)
        page = context.new_page()
        page.goto(reverse("marketplace_workspace", kwargs={"workspace_slug": "bravo"}))
        expect(page.get_by_text("failed evaluation #")).to_be_visible()
        expect(page.get_by_label("Upgrade automatically to new versions")).to_be_checked()
        page.screenshot(path=str(shots / f"auto-upgrade-{width}.png"), full_page=True)
        assert page.evaluate(_EXTRA_WIDTH) <= 0
        context.close()
