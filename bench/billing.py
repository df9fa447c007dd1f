"""Benchmark what billing costs: quota enforcement on a model call and on a run start, webhook
events processed per second, and meter events sent per second.

    .venv/bin/python bench/billing.py [--calls 300] [--runs 300] [--webhooks 300] [--meter 1000]

Self-contained like bench/gateway.py: without DATABASE_URL / REDIS_URL it starts its own
embedded PostgreSQL and Valkey in .local/bench/, works in a fresh database
`bench_billing_<pid>` (dropped at the end) and one workspace cloned from the template, and
talks to a loopback FakeOpenAI and FakeStripe (the real openai and stripe SDKs).

1. **model call**: `agents.gateway.calls.gateway_complete` of a priced model with billing off
   (`BILLING_QUOTAS=False`, the baseline) and on, alternating. With billing on the workspace is
   on a plan that refuses spend past its included amount (the gateway reads the allowance and
   the period's spend before the call), so this is the most a call pays.
2. **run start**: `agents.services.agent_run_start` (the run row and its queued task) with
   billing off and on (the plan row locked, the count raised, the 80/100 % check).
3. **webhooks**: signed Stripe events (`customer.subscription.updated`, `invoice.paid`) posted
   to dj-stripe's webhook view through Django's test client, each verified, deduplicated,
   re-read from the fake and applied; events per second over the whole batch.
4. **meter events**: pending outbox rows sent to the fake by the flusher; events per second.

The last line of stdout is machine-readable:
    quota_overhead_median_ms=<x> quota_overhead_p95_ms=<x> webhooks_per_s=<x> meter_events_per_s=<x>
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.gateway import (  # noqa: E402
    admin_sql,
    drop_database,
    ms,
    p95,
    say,
    setup_workspace,
)

QUOTA_TARGET_MS = 1.0
WEBHOOK_TARGET_PER_S = 200.0


def alternate(
    count: int, off: Callable[[], Any], on: Callable[[], Any], label: str
) -> tuple[list[float], list[float]]:
    """Time `off` (billing off) and `on` (billing on) `count` times each, alternating which
    goes first so both see the same machine load."""
    from django.test import override_settings

    def timed(function: Callable[[], Any], quotas: bool) -> float:
        with override_settings(BILLING_QUOTAS=quotas):
            started = time.perf_counter()
            function()
            return time.perf_counter() - started

    for _ in range(20):  # warm both paths
        timed(off, False)
        timed(on, True)
    off_s: list[float] = []
    on_s: list[float] = []
    for index in range(count):
        if index % 2:
            on_s.append(timed(on, True))
            off_s.append(timed(off, False))
        else:
            off_s.append(timed(off, False))
            on_s.append(timed(on, True))
        if (index + 1) % 100 == 0:
            say(f"  {label}: {index + 1}/{count}")
    return off_s, on_s


def prepare(workspace: Any, openai_url: str) -> dict[str, Any]:
    """A priced model alias, an agent, the plans mirrored to the fake, and a Stripe customer."""
    from agents.models import AliasTarget, ModelAlias, ProviderCredential
    from billing.demo import seed_demo_plans
    from billing.models import ModelPrice, Plan
    from billing.stripe_client import stripe_client
    from billing.stripe_sync import plans_sync

    ModelPrice.objects.create(
        provider="openai",
        model="gpt-bench",
        input_per_mtok=Decimal("0.15"),
        output_per_mtok=Decimal("0.60"),
    )
    credential = ProviderCredential(name="bench", kind="openai", base_url=openai_url)
    credential.set_api_key("sk-bench-key")
    credential.save()
    alias = ModelAlias.objects.create(name="bench")
    AliasTarget.objects.create(
        alias=alias, position=0, kind="openai", model="gpt-bench", credential=credential
    )
    seed_demo_plans()
    capped = Plan.objects.create(
        key="bench-capped",
        name="Bench (capped)",
        monthly_price_cents=1000,
        included_ai_spend_usd=Decimal(1000),
        runs_per_month=1_000_000,
    )
    client = stripe_client()
    plans_sync(client)
    customer = client.v1.customers.create(params={"name": "Bench"})
    return {"capped": capped, "client": client, "customer": customer.id}


def on_plan(workspace: Any, plan_key: str, customer: str = "") -> None:
    """Saved as the platform saves it, so the gateway's cached plan view is announced stale."""
    from billing.models import Plan, WorkspacePlan

    row = WorkspacePlan.objects.get(workspace=workspace)
    row.plan, row.stripe_customer_id, row.runs_used = Plan.objects.get(key=plan_key), customer, 0
    row.save(update_fields=["plan", "stripe_customer_id", "runs_used", "updated_at"])


def measure_model_call(count: int, workspace: Any, customer: str) -> dict[str, list[float]]:
    from agents.gateway.calls import gateway_complete
    from agents.providers.base import ChatRequest, Message

    request = ChatRequest(model="", messages=(Message(role="user", content="Say hello."),))

    def call() -> None:
        gateway_complete(model="bench", request=request)

    on_plan(workspace, "bench-capped")
    say(f"• {count} model calls, billing off and on (a capped plan: allowance and spend read)")
    off_s, capped_s = alternate(count, call, call, "capped plan")
    on_plan(workspace, "pro", customer)
    say(f"• {count} model calls, billing off and on (an overage plan: a meter outbox row each)")
    off2_s, overage_s = alternate(count, call, call, "overage plan")
    return {"off": off_s + off2_s, "capped": capped_s, "overage": overage_s}


def measure_run_start(count: int, workspace: Any, user: Any) -> tuple[list[float], list[float]]:
    from agents import services
    from tenants.permissions import Access

    access = Access(workspace=workspace, user=user, role="owner")
    agent = services.agent_create(access=access, name="Bench runs", model="offline:demo")
    on_plan(workspace, "bench-capped")

    def start() -> None:
        services.agent_run_start(access=access, agent_id=agent.pk, input="Hello")

    say(f"• {count} run starts, billing off and on")
    return alternate(count, start, start, "run starts")


def measure_webhooks(count: int, workspace: Any, fake: Any, context: dict[str, Any]) -> Any:
    """Generate events on the fake (a checkout, then subscription updates), then post each one,
    signed, to dj-stripe's view; then post them all again (duplicates: the baseline)."""
    import json

    from django.core.management import call_command
    from django.test import Client
    from djstripe.models import WebhookEndpoint

    from billing.models import WorkspacePlan
    from billing.subscriptions import checkout_start

    on_plan(workspace, "free")
    call_command("billing_webhook_endpoint", url="http://localhost", stdout=io.StringIO())
    endpoint = WebhookEndpoint.objects.get()
    url = checkout_start(
        workspace_id=workspace.pk,
        plan_key="pro",
        interval="month",
        success_url="http://localhost/ok",
        cancel_url="http://localhost/billing",
        actor_id=None,
    )
    subscription = fake.complete_checkout(url.rsplit("/", 1)[1])["id"]
    client = context["client"]
    while len(fake.events) < count:
        client.v1.subscriptions.update(subscription, params={"metadata": {"n": len(fake.events)}})
    events = list(fake.events)[:count]
    http = Client(HTTP_HOST="localhost")
    path = f"/stripe/webhook/{endpoint.djstripe_uuid}/"

    def post(event: dict[str, Any]) -> float:
        body = json.dumps(event)
        started = time.perf_counter()
        response = http.post(
            path,
            body,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=fake.sign(body, secret=endpoint.secret),
        )
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{event['type']}: HTTP {response.status_code}")
        return elapsed

    say(f"• posting {len(events)} signed events to dj-stripe's webhook view")
    started = time.perf_counter()
    first = [post(event) for event in events]
    total = time.perf_counter() - started
    say("• posting them again (already processed: deduplicated)")
    again = [post(event) for event in events]
    row = WorkspacePlan.objects.select_related("plan").get(workspace=workspace)
    if row.plan.key != "pro" or row.stripe_subscription_id != subscription:
        raise RuntimeError(f"the webhooks left the workspace on {row.plan.key}")
    return first, again, len(events) / total


def measure_meter(count: int, workspace: Any, context: dict[str, Any]) -> Any:
    """`count` pending outbox rows sent by the flusher; baseline: the same number of meter
    events sent straight through the SDK, one request each, no outbox."""
    from django.utils import timezone

    from billing.meter import AI_SPEND_EVENT, CUSTOMER_KEY, meter_flush
    from billing.models import MeterOutbox

    client, customer = context["client"], context["customer"]
    meter_flush(client)  # what the overage model calls queued: not part of the measurement
    now = timezone.now()
    say(f"• {count} meter events straight through the SDK (baseline)")
    direct: list[float] = []
    for index in range(count):
        started = time.perf_counter()
        client.v1.billing.meter_events.create(
            params={
                "event_name": AI_SPEND_EVENT,
                "payload": {CUSTOMER_KEY: customer, "value": "1000"},
                "identifier": f"bench-direct-{index}",
                "timestamp": int(now.timestamp()),
            },
            options={"idempotency_key": f"bench-direct-{index}"},
        )
        direct.append(time.perf_counter() - started)
    MeterOutbox.objects.bulk_create(
        MeterOutbox(
            workspace=workspace,
            event_name=AI_SPEND_EVENT,
            value=1000,
            stripe_customer_id=customer,
            ledger_schema="bench",
            ledger_id=index,
            occurred_at=now,
        )
        for index in range(count)
    )
    say(f"• flushing {count} outbox rows")
    started = time.perf_counter()
    report = meter_flush(client)
    total = time.perf_counter() - started
    if report.sent != count:
        raise RuntimeError(f"the flusher sent {report.sent} of {count}: {report.errors}")
    return direct, [total / count] * count, count / total, count / sum(direct)


def row(name: str, values: list[float], baseline: list[float]) -> str:
    ratio = statistics.median(values) / statistics.median(baseline)
    return (
        f"| {name:<46} | {ms(statistics.median(values)):>9.3f} | {ms(p95(values)):>9.3f} "
        f"| {ratio:>8.2f}× |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--webhooks", type=int, default=300)
    parser.add_argument("--meter", type=int, default=1000)
    args = parser.parse_args(argv)
    if min(args.calls, args.runs, args.webhooks, args.meter) < 20:
        raise SystemExit("--calls, --runs, --webhooks, --meter: at least 20 each")
    database = f"bench_billing_{os.getpid()}"

    from config.embedded import embedded_services

    failed = False
    with contextlib.ExitStack() as stack:
        os.environ.update(stack.enter_context(embedded_services(root=ROOT / ".local" / "bench")))
        admin_sql("CREATE DATABASE {}", database)
        stack.callback(drop_database, database)
        os.environ["BENCH_DATABASE_NAME"] = database
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
        import django

        django.setup()
        from django.test import override_settings
        from django_tenants.utils import schema_context

        from tests.fakes import FakeOpenAI, FakeStripe

        try:
            openai_fake = stack.enter_context(FakeOpenAI())
            stripe_fake = stack.enter_context(FakeStripe(hold_events=True))
            stack.enter_context(
                override_settings(
                    OUTBOUND_ALLOW_PRIVATE_NETWORKS=True,  # the fakes are on 127.0.0.1
                    STRIPE_TEST_SECRET_KEY="sk_test_" + "benchmark" * 3,
                    STRIPE_LIVE_MODE=False,
                    STRIPE_API_BASE=stripe_fake.base_url,
                    BILLING_QUOTAS=True,
                )
            )
            workspace, user = setup_workspace()
            with schema_context(workspace.schema_name):
                context = prepare(workspace, openai_fake.base_url)
                calls = measure_model_call(args.calls, workspace, context["customer"])
                runs_off, runs_on = measure_run_start(args.runs, workspace, user)
            first, again, webhooks_per_s = measure_webhooks(
                args.webhooks, workspace, stripe_fake, context
            )
            direct, flushed, meter_per_s, direct_per_s = measure_meter(
                args.meter, workspace, context
            )
        except BaseException:
            failed = True
            traceback.print_exc(file=sys.stderr)
    if failed:
        return 1
    off = calls["off"]
    overheads = {
        key: (
            ms(statistics.median(calls[key]) - statistics.median(off)),
            ms(p95(calls[key]) - p95(off)),
        )
        for key in ("capped", "overage")
    }
    worst = max(overheads, key=lambda key: overheads[key][0])
    median_ms, p95_ms = overheads[worst]
    run_median = ms(statistics.median(runs_on) - statistics.median(runs_off))
    run_p95 = ms(p95(runs_on) - p95(runs_off))
    print("| path (baseline: the same path, billing off)    | median ms |    p95 ms |    ratio |")
    print("| ---------------------------------------------- | --------: | --------: | -------: |")
    print(row("model call, billing off", off, off))
    print(row("model call, capped plan (allowance + spend)", calls["capped"], off))
    print(row("model call, overage plan (+ meter outbox row)", calls["overage"], off))
    print(row("run start, billing off", runs_off, runs_off))
    print(row("run start, billing on (plan row locked)", runs_on, runs_off))
    print(row("webhook event, duplicate (baseline)", again, again))
    print(row("webhook event, first delivery", first, again))
    print(row("meter event, straight through the SDK", direct, direct))
    print(row("meter event, through the outbox flusher", flushed, direct))
    print()
    print(
        f"quota overhead per model call: median {median_ms:.3f} ms, p95 {p95_ms:.3f} ms "
        f"({worst} plan, the slower; target ≤ {QUOTA_TARGET_MS} ms median: "
        f"{'met' if median_ms <= QUOTA_TARGET_MS else 'MISSED'})"
    )
    for key, (key_median, key_p95) in overheads.items():
        print(f"  {key} plan: median {key_median:.3f} ms, p95 {key_p95:.3f} ms")
    print(f"quota overhead per run start: median {run_median:.3f} ms, p95 {run_p95:.3f} ms")
    print(
        f"webhooks: {webhooks_per_s:.1f} events/s (target ≥ {WEBHOOK_TARGET_PER_S:.0f}: "
        f"{'met' if webhooks_per_s >= WEBHOOK_TARGET_PER_S else 'MISSED'})"
    )
    print(
        f"meter events: {meter_per_s:.1f}/s through the outbox, {direct_per_s:.1f}/s one "
        "request at a time without it"
    )
    print(
        f"quota_overhead_median_ms={median_ms:.3f} quota_overhead_p95_ms={p95_ms:.3f} "
        f"webhooks_per_s={webhooks_per_s:.1f} meter_events_per_s={meter_per_s:.1f}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
