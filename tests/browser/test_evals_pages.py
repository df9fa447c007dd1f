"""The evaluation results and the comparison of two versions in a browser, at 1280 and 390 px:
the verdicts are visible and nothing pushes the page sideways. Screenshots land in the test's
tmp_path (or $SCREENSHOT_DIR)."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django_tenants.utils import schema_context
from playwright.sync_api import Browser, expect

from agents.services import agent_create, agent_update
from evals import services
from tests.helpers.browser import signed_in
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.browser

_EXTRA_WIDTH = "document.documentElement.scrollWidth - window.innerWidth"


def test_evaluation_results_and_comparison_fit_desk_and_phone(
    committed_world: World, live_server: Any, browser: Browser, tmp_path: Path
) -> None:
    shots = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    access = access_of(committed_world.owner, committed_world.workspace_a)
    with schema_context(committed_world.workspace_a.schema_name):
        dataset = services.dataset_import(
            access=access,
            name="Support questions",
            filename="support.jsonl",
            data=(
                b'{"input": "Say hello to a new customer"}\n'
                b'{"input": "What is 6 * 7?", "expected": "42"}\n'
                b'{"input": "How do I reset my password? Please explain step by step."}\n'
            ),
        )
        suite = services.suite_create(
            access=access,
            name="Support suite",
            dataset_id=dataset.pk,
            evaluators_spec=[
                {"kind": "regex", "pattern": "(?i)hello"},
                {"kind": "max_latency", "ms": 5000},
                {"kind": "judge", "model": "offline:demo", "rubric": 'Says "hello".'},
            ],
            pass_threshold=Decimal("0.3"),
        )
        agent = agent_create(access=access, name="Support bot", model="offline:demo")
        first = services.evaluation_start(access=access, suite_id=suite.pk, agent_id=agent.pk)
        services.evaluation_execute(first.pk)
        agent_update(access=access, agent_id=agent.pk, system_prompt="Be kind.")
        second = services.evaluation_start(access=access, suite_id=suite.pk, agent_id=agent.pk)
        services.evaluation_execute(second.pk)
    detail = reverse(
        "evals_evaluation", kwargs={"workspace_slug": "alpha", "evaluation_id": first.pk}
    )
    compare = (
        reverse("evals_compare", kwargs={"workspace_slug": "alpha"})
        + f"?left={first.pk}&right={second.pk}"
    )
    for width in (1280, 390):
        context = signed_in(browser, committed_world.owner, live_server.url, width=width)
        page = context.new_page()
        page.goto(detail)
        expect(page.get_by_role("heading", name=f"Evaluation #{first.pk}")).to_be_visible()
        expect(page.locator("#evaluation-progress")).to_contain_text("Score33%")
        expect(page.get_by_text("✓ regex /(?i)hello/").first).to_be_visible()
        page.screenshot(path=str(shots / f"evaluation-{width}.png"), full_page=True)
        assert page.evaluate(_EXTRA_WIDTH) <= 0
        page.goto(compare)
        expect(page.get_by_role("heading", name="Compare evaluations")).to_be_visible()
        page.screenshot(path=str(shots / f"compare-{width}.png"), full_page=True)
        assert page.evaluate(_EXTRA_WIDTH) <= 0
        page.goto(reverse("evals", kwargs={"workspace_slug": "alpha"}))
        page.screenshot(path=str(shots / f"evals-index-{width}.png"), full_page=True)
        assert page.evaluate(_EXTRA_WIDTH) <= 0
        context.close()
