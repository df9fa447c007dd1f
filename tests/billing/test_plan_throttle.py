"""The plan's API rate: with quotas on, a workspace's API requests per minute stop at its plan's
`api_requests_per_minute` with a 429 in the standard envelope that names the limit, the plan
and how to raise it, plus Retry-After. Keys and sessions of one workspace share the budget;
another workspace and an unlimited plan are untouched; quotas off, no limit. Counted in Redis,
so concurrent requests at the limit cannot pass it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from billing.models import Plan, WorkspacePlan
from billing.plans import default_plan
from billing.throttling import PlanRateLimited, PlanRateThrottle
from tenants.models import ApiKey
from tenants.permissions import Perm
from tenants.services import api_key_create
from tests.helpers.personas import World, access_of, key_client, logged_in

pytestmark = pytest.mark.django_db

WORKSPACE = "/api/v1/workspace/"


@pytest.fixture
def three_a_minute(settings: Any, world: World) -> Iterator[Plan]:
    """Quotas on; the default plan (every test workspace's) allows 3 API requests a minute.
    The counters and the cached rate are Redis's, not the test transaction's: cleared after."""
    settings.BILLING_QUOTAS = True
    plan = default_plan()
    plan.api_requests_per_minute = 3
    plan.save(update_fields=["api_requests_per_minute"])
    cache.clear()
    _a_fresh_clock_minute()
    yield plan
    cache.clear()


def _a_fresh_clock_minute(margin: float = 20.0) -> None:
    """The throttle counts per clock minute: when fewer than `margin` seconds of this minute are
    left, wait for the next to start, so a test's requests all fall in one window."""
    left = 60 - time.time() % 60
    if left < margin:
        threading.Event().wait(left + 0.05)  # the condition is the clock itself


def test_the_plan_rate_refuses_the_request_past_it_with_the_envelope_and_retry_after(
    world: World, three_a_minute: Plan
) -> None:
    client = key_client(world, [Perm.WORKSPACE_VIEW])

    allowed = [client.get(WORKSPACE).status_code for _ in range(3)]
    refused = client.get(WORKSPACE)

    assert allowed == [200, 200, 200]
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    error = refused.json()["error"]
    assert set(error) == {"code", "message", "fields"}
    assert error["code"] == "plan_rate_limited"
    assert "Free plan allows 3 API requests a minute" in error["message"]
    assert "upgrade the plan on the Billing page" in error["message"]
    assert f"Try again in {refused['Retry-After']} seconds" in error["message"]


def test_keys_and_sessions_of_a_workspace_share_its_budget_and_others_keep_theirs(
    world: World, three_a_minute: Plan
) -> None:
    first = key_client(world, [Perm.WORKSPACE_VIEW])
    second = key_client(world, [Perm.WORKSPACE_VIEW])
    session = logged_in(world.owner)
    bravo = key_client(world, [Perm.WORKSPACE_VIEW], workspace=world.workspace_b)

    assert first.get(WORKSPACE).status_code == 200
    assert second.get(WORKSPACE).status_code == 200
    assert session.get(WORKSPACE, HTTP_X_WORKSPACE="alpha").status_code == 200
    assert first.get(WORKSPACE).status_code == 429
    assert session.get(WORKSPACE, HTTP_X_WORKSPACE="alpha").status_code == 429

    assert bravo.get(WORKSPACE).status_code == 200


def test_an_outsider_naming_a_workspace_does_not_spend_its_budget(
    world: World, three_a_minute: Plan
) -> None:
    outsider = logged_in(world.outsider)
    for _ in range(5):
        assert outsider.get(WORKSPACE, HTTP_X_WORKSPACE="alpha").status_code == 404

    assert key_client(world, [Perm.WORKSPACE_VIEW]).get(WORKSPACE).status_code == 200


def test_an_unlimited_plan_and_quotas_off_are_not_limited(
    world: World, three_a_minute: Plan, settings: Any
) -> None:
    unlimited = Plan.objects.create(key="big", name="Big", api_requests_per_minute=None)
    WorkspacePlan.objects.filter(workspace=world.workspace_a).update(plan=unlimited)
    cache.clear()
    client = key_client(world, [Perm.WORKSPACE_VIEW])
    assert all(client.get(WORKSPACE).status_code == 200 for _ in range(6))

    WorkspacePlan.objects.filter(workspace=world.workspace_a).update(plan=three_a_minute)
    settings.BILLING_QUOTAS = False
    cache.clear()
    assert all(client.get(WORKSPACE).status_code == 200 for _ in range(6))


def test_a_plan_change_applies_once_the_cached_rate_expires(
    world: World, three_a_minute: Plan
) -> None:
    client = key_client(world, [Perm.WORKSPACE_VIEW])
    for _ in range(3):
        client.get(WORKSPACE)
    assert client.get(WORKSPACE).status_code == 429

    bigger = Plan.objects.create(key="pro-x", name="Pro X", api_requests_per_minute=100)
    WorkspacePlan.objects.filter(workspace=world.workspace_a).update(plan=bigger)
    cache.delete(f"billing:api-rate:plan:{world.workspace_a.pk}")  # what PLAN_RATE_SECONDS does

    assert client.get(WORKSPACE).status_code == 200


def test_concurrent_requests_at_the_limit_cannot_pass_it(
    world: World, three_a_minute: Plan
) -> None:
    # Given a key, and the throttle asked 12 times at once from threads (as 12 workers would)
    key, _ = api_key_create(
        access=access_of(world.owner, world.workspace_a), name="c", scopes=[Perm.WORKSPACE_VIEW]
    )
    assert isinstance(key, ApiKey)
    request = Request(APIRequestFactory().get(WORKSPACE))
    request.auth = key
    throttle = PlanRateThrottle()

    def attempt(_: int) -> bool:
        try:
            return throttle.allow_request(request, None)
        except PlanRateLimited:
            return False

    # The plan's rate is read once before the threads start (each thread has its own DB
    # connection, which cannot see this test's transaction).
    throttle.allow_request(request, None)
    with ThreadPoolExecutor(max_workers=12) as pool:
        passed = sum(pool.map(attempt, range(12)))

    # Then exactly the two left of the three passed
    assert passed == 2
