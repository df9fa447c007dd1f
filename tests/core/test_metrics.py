"""`/metrics`: only for the holder of METRICS_TOKEN; requests counted by route name; a real
workflow run on a real Celery worker process shows up (tasks, steps, runs, model calls and
tokens, written by the worker's process and summed by the web's scrape); the queue, breaker and
billing-outbox figures are read when scraped; and labels stay bounded however many workspaces,
runs and model names there are."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx2
import pytest
import redis
from django.conf import settings as django_settings
from django.test import Client
from django_tenants.utils import schema_context

from agents.cache import responses as cache
from agents.gateway.breaker import CircuitBreaker
from agents.gateway.calls import UsageContext, gateway_complete
from agents.providers.base import ChatRequest, Message
from agents.services import agent_create
from agents.webhooks import delivery_enqueue, webhook_attempt
from core import hooks, metrics_exporter
from tenants.permissions import Access
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.helpers.billing import bill, on_overage_plan
from tests.helpers.metrics import TOKEN, Series, scrape, total, value
from tests.helpers.personas import World, logged_in
from tests.helpers.workflows import make_workflow
from tests.workflows.test_engine_worker import CHAIN, finished, in_schema, wait_for
from workflows import runs
from workflows.models import WorkflowRun

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _token(settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN


def test_without_a_token_configured_the_endpoint_does_not_exist(settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert Client().get("/metrics").status_code == 404
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_the_token_is_required(settings: Any) -> None:
    anonymous = Client().get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    ok = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert ok.status_code == 200
    assert ok["Content-Type"].startswith("text/plain")


def test_a_signed_in_member_without_the_token_is_refused(world: World) -> None:
    assert logged_in(world.owner).get("/metrics").status_code == 401


def test_requests_are_counted_by_route_name_and_status_class() -> None:
    before = scrape()
    Client().get("/healthz")
    Client().get("/no-such-page/at-all")
    after = scrape()
    requests = "agentmarket_http_requests_total"
    ok = {"view": "healthz", "method": "GET", "status": "2xx"}
    missing = {"view": "unmatched", "method": "GET", "status": "4xx"}
    assert value(after, requests, **ok) == value(before, requests, **ok) + 1
    assert value(after, requests, **missing) == value(before, requests, **missing) + 1
    assert value(after, "agentmarket_http_request_duration_seconds_count", view="healthz") >= 1
    assert not [k for k in after if "no-such-page" in str(k)]


def test_the_queue_breakers_and_billing_outbox_are_read_when_scraped(
    world: World, settings: Any
) -> None:
    settings.STRIPE_TEST_SECRET_KEY = "sk_test_platform"  # without a key nothing is metered
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    queue = django_settings.CELERY_TASK_DEFAULT_QUEUE
    open_set = f"{django_settings.CACHES['default']['KEY_PREFIX']}:breakers-open"
    client.delete(queue, open_set)  # what earlier tests left
    client.rpush(queue, "m1", "m2", "m3")  # three messages nobody consumes
    breaker = CircuitBreaker("platform:openai:gpt-metrics")
    for _ in range(breaker.policy.threshold):
        breaker.record_failure()
    on_overage_plan(world.workspace_a)
    bill(world.workspace_a, "0.50")
    try:
        series = scrape()
    finally:
        client.delete(queue, f"{breaker.key}:open_until")
        client.zrem(open_set, breaker.key)
    assert value(series, "agentmarket_celery_queue_length", queue=queue) == 3
    assert (
        value(series, "agentmarket_circuit_breakers_open", scope="platform", provider="openai") == 1
    )
    assert value(series, "agentmarket_billing_outbox_rows", status="pending") == 1
    assert value(series, "agentmarket_billing_outbox_lag_seconds") >= 0


def _keys(series: Series) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return set(series)


def test_many_workspaces_runs_and_model_names_add_no_series(world: World) -> None:
    """One of each first (its series appear), then forty more: the set of series is the same."""

    def activity(index: int) -> None:
        owner = logged_in(world.owner)
        owner.get(f"/w/{world.workspace_a.slug}/")
        owner.get(f"/w/no-such-workspace-{index}/")
        with schema_context(world.workspace_a.schema_name):
            gateway_complete(
                model=f"offline:made-up-model-{index}",
                request=ChatRequest(model="", messages=(Message(role="user", content="hi"),)),
            )
        hooks.run_finished.fire(
            hooks.RunFinished(
                kind="workflow",
                run_id=10_000 + index,
                schema_name=f"w_schema_{index}",
                status="succeeded",
                listing_version_id=None,
                latency_ms=1200,
                cost_usd=Decimal("0.01"),
            )
        )

    scrape()  # the scrape's own request is counted too
    activity(0)
    first = scrape()
    for index in range(1, 41):
        activity(index)
    later = scrape()
    assert _keys(later) == _keys(first)
    assert value(later, "agentmarket_runs_finished_total", kind="workflow", status="succeeded") >= (
        value(first, "agentmarket_runs_finished_total", kind="workflow", status="succeeded") + 40
    )
    calls = {"provider": "offline", "model": "other", "outcome": "ok"}
    assert value(later, "agentmarket_model_calls_total", **calls) >= 41
    assert not [key for key in later if "made-up-model" in str(key) or "w_schema" in str(key)]


@pytest.mark.worker
def test_a_workflow_run_on_the_worker_process_is_in_the_scrape(
    committed_world: World, worker_queue: str
) -> None:
    before = scrape()
    with in_schema(committed_world.workspace_a):
        workflow = make_workflow(CHAIN, name="Metered triage")
        run = runs.run_start(
            workflow=workflow, inputs={"ticket": "printer"}, trigger=WorkflowRun.TriggerKind.API
        )
        wait_for(finished(run), what="the run on the worker")
        assert run.status == "succeeded", run.error

    # classify, is_urgent and reply ran (page was skipped); the worker counts a task after
    # its body, so the run may read finished a moment before the last one is counted.
    tasks = {"task": "workflows.execute_step", "outcome": "success"}
    after = wait_for(
        lambda: (
            s
            if total(s := scrape(), "agentmarket_celery_tasks_total", **tasks)
            >= total(before, "agentmarket_celery_tasks_total", **tasks) + 3
            else None
        ),
        what="the worker's task counts",
    )

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("agentmarket_celery_task_duration_seconds_count", task=tasks["task"]) >= 3
    steps = "agentmarket_workflow_steps_total"
    assert grew(steps, node_type="llm", outcome="succeeded") == 1
    assert grew(steps, node_type="transform", outcome="succeeded") == 1
    assert grew("agentmarket_workflow_step_duration_seconds_count", node_type="llm") == 1
    assert grew("agentmarket_runs_finished_total", kind="workflow", status="succeeded") == 1
    assert grew("agentmarket_run_duration_seconds_count", kind="workflow") == 1
    model = {"provider": "offline", "model": "other"}
    assert grew("agentmarket_model_calls_total", outcome="ok", **model) == 1
    assert grew("agentmarket_model_tokens_total", direction="input", **model) > 0
    assert grew("agentmarket_model_tokens_total", direction="output", **model) > 0
    assert (
        value(
            after,
            "agentmarket_celery_queue_length",
            queue=django_settings.CELERY_TASK_DEFAULT_QUEUE,
        )
        >= 0
    )


def test_a_worker_hosts_exporter_serves_its_figures_with_the_same_token() -> None:
    """What a Celery worker on its own host serves (CELERY_METRICS_PORT): this host's process
    figures, not the deployment-wide ones the web's scrape reads."""
    Client().get("/healthz")  # something counted in this host's files
    server = metrics_exporter.start(host="127.0.0.1", port=0)
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        assert httpx2.get(url).status_code == 401
        assert httpx2.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = httpx2.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert httpx2.get(url.replace("/metrics", "/other")).status_code == 404
    finally:
        server.shutdown()
        server.server_close()
    assert ok.status_code == 200
    assert 'agentmarket_http_requests_total{method="GET",status="2xx",view="healthz"}' in ok.text
    assert "agentmarket_celery_queue_length" not in ok.text


def test_response_cache_hits_and_misses_are_counted(owner_access: Access) -> None:
    before = scrape()  # (a request: it leaves the connection in the public schema)
    with schema_context(owner_access.workspace.schema_name):
        agent = agent_create(access=owner_access, name="FAQ", model="offline:demo")
        version = agent.current_version
        assert version is not None
        asked = [Message(role="user", content="How do I reset my password?")]
        other = [Message(role="user", content="Where is my invoice?")]
        key = cache.cache_key(version, asked, user_id=None)
        cache.store(
            version,
            key,
            asked,
            answer="From the sign-in page.",
            tool_steps=[],
            cost_usd=Decimal("0.01"),
            input_tokens=10,
            output_tokens=5,
        )
        context = UsageContext(agent_id=agent.pk)
        assert cache.lookup(version, key, context=context) is not None
        other_key = cache.cache_key(version, other, user_id=None)
        assert cache.lookup(version, other_key, context=context) is None
    after = scrape()
    lookups = "agentmarket_response_cache_lookups_total"
    assert (
        value(after, lookups, result="hit_exact") == value(before, lookups, result="hit_exact") + 1
    )
    assert value(after, lookups, result="miss") == value(before, lookups, result="miss") + 1


def test_webhook_delivery_attempts_are_counted_by_outcome(world: World, settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # the receiver is on loopback
    attempts = "agentmarket_webhook_delivery_attempts_total"
    before = scrape()
    with WebhookReceiver() as receiver, schema_context(world.workspace_a.schema_name):
        receiver.statuses = [500, 200]
        delivery = delivery_enqueue(event="test.event", url=receiver.url, payload={"n": 1})
        assert webhook_attempt(delivery.pk) is not None  # 500: tried again later
        assert webhook_attempt(delivery.pk) is None  # 200: delivered
    after = scrape()
    for outcome in ("retrying", "delivered"):
        assert (
            value(after, attempts, outcome=outcome) == value(before, attempts, outcome=outcome) + 1
        )
