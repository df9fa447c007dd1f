"""Benchmark the workflow engine's orchestration overhead per step and its throughput, against
a bare Celery round trip on the same broker, measured in the same run.

    .venv/bin/python bench/engine.py [--runs 30] [--concurrent 50] [--concurrency 2]

Self-contained like bench/gateway.py: without DATABASE_URL / REDIS_URL it starts its own
embedded PostgreSQL and Valkey in .local/bench/, works in a fresh database
`bench_engine_<pid>` (dropped at the end) and one workspace cloned from the template, and starts
a real Celery worker subprocess (prefork, `--concurrency` children) on the bench queue.

1. **celery round trip**: a no-op task (`celery.accumulate`), `.delay().get()`, sequentially.
2. **20-step chain** of `transform` steps, `--runs` runs one after another. A step's latency is
   the time from its predecessor's completion (the run's creation for the first) to its own
   completion, both stamped by the engine: the enqueue after commit, the broker hop, the claim,
   the node and the completion transaction. Transform nodes do next to no work, so this is the
   orchestration overhead per step.
3. **20-step chain of offline-LLM steps** (`llm` on `offline:demo`, through the gateway): the
   same latency, minus the median of a direct in-process `gateway_complete` on the same model
   (so what is left is the engine's share).
4. **10-wide fan-out**: parallel → 10 transforms → join (12 steps); run wall time ÷ steps.
5. **throughput**: `--concurrent` runs of the 20-step transform chain started at once; steps
   per second from the first creation to the last completion.
6. **code step overhead**: a 20-step chain alternating trivial `transform` and trivial `code`
   steps (`return inputs["n"] + 1`, through the real sandbox), so both kinds are measured in
   the same runs; a code step's latency minus the median transform step's is what the sandbox
   adds (target ≤ 50 ms median).

The last line of stdout is machine-readable:
    celery_rtt_median_ms=… step_overhead_median_ms=… step_overhead_ratio=… steps_per_s=…
    code_step_overhead_median_ms=…
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, where bench/http.py would hide
# the standard library's `http` package (Django imports it): the project's root instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

RATIO_TARGET = 3.0
CODE_STEP_TARGET_MS = 50.0
THROUGHPUT_TARGET = 150.0
CHAIN_LENGTH = 20
FAN_OUT = 10


def say(message: str = "") -> None:
    print(message, file=sys.stderr, flush=True)


def ms(seconds: float) -> float:
    return seconds * 1000


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def _admin(sql_text: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(sql.SQL(sql_text).format(sql.Identifier(name)))


def drop_database(name: str) -> None:
    with contextlib.suppress(Exception):
        from django.db import connections

        connections.close_all()
    _admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)
    say(f"• dropped database {name}")


def setup_workspace() -> Any:
    from django.core.management import call_command

    from accounts.models import User
    from tenants import provisioning, services

    say("• migrate_schemas --shared, template, one workspace")
    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    provisioning.template_workspace()
    user = User.objects.create_user(email="bench@bench.test", password=None)
    return services.workspace_create(user=user, name="Bench", slug="bench-engine")


@contextlib.contextmanager
def worker(concurrency: int, conn_max_age: int) -> Iterator[subprocess.Popen[bytes]]:
    from django.conf import settings

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "WORKER_DB_CONN_MAX_AGE": str(conn_max_age),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(concurrency),
            "-Q",
            settings.CELERY_TASK_DEFAULT_QUEUE,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        cwd=ROOT,
        stdout=sys.stderr,  # its banner; stdout is the report
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def chain(kind: str) -> dict[str, Any]:
    def node(i: int) -> dict[str, Any]:
        if kind == "llm":
            config = {"model": "offline:demo", "prompt": f"Step {i} of the chain", "max_tokens": 64}
            return {"id": f"s{i}", "type": "llm", "config": config}
        value = "{{ input.n }}" if i == 0 else f"{{{{ steps.s{i - 1} + 1 }}}}"
        return {"id": f"s{i}", "type": "transform", "config": {"value": value}}

    return {
        "schema_version": 1,
        "inputs": {"n": {"type": "integer", "default": 0}},
        "steps": [node(i) for i in range(CHAIN_LENGTH)],
        "edges": [{"from": f"s{i}", "to": f"s{i + 1}"} for i in range(CHAIN_LENGTH - 1)],
    }


def mixed_chain() -> dict[str, Any]:
    """Transform and code steps alternating, each adding one to its predecessor's output."""

    def node(i: int) -> dict[str, Any]:
        previous = "{{ input.n }}" if i == 0 else f"{{{{ steps.s{i - 1} }}}}"
        if i % 2 == 0:
            return {"id": f"s{i}", "type": "transform", "config": {"value": previous}}
        code = 'def main(inputs):\n    return inputs["n"] + 1\n'
        return {"id": f"s{i}", "type": "code", "config": {"code": code, "inputs": {"n": previous}}}

    return {
        "schema_version": 1,
        "inputs": {"n": {"type": "integer", "default": 0}},
        "steps": [node(i) for i in range(CHAIN_LENGTH)],
        "edges": [{"from": f"s{i}", "to": f"s{i + 1}"} for i in range(CHAIN_LENGTH - 1)],
    }


def measure_code_steps(flow: Any, runs: int) -> tuple[list[float], list[float]]:
    """(code step latencies, transform step latencies) of a mixed chain, the first step (which
    includes the run's start) left out."""
    code: list[float] = []
    transforms: list[float] = []
    for _ in range(runs):
        run = start(flow)
        wait_all([run.pk])
        for i, latency in enumerate(step_latencies(run.pk)):
            if i:
                (code if i % 2 else transforms).append(latency)
    return code, transforms


def fan_out() -> dict[str, Any]:
    branches = [
        {"id": f"b{i}", "type": "transform", "config": {"value": f"branch {i}"}}
        for i in range(FAN_OUT)
    ]
    return {
        "schema_version": 1,
        "steps": [
            {"id": "split", "type": "parallel", "config": {}},
            *branches,
            {"id": "merge", "type": "join", "config": {"mode": "all"}},
        ],
        "edges": [
            *({"from": "split", "to": b["id"]} for b in branches),
            *({"from": b["id"], "to": "merge"} for b in branches),
        ],
    }


def workflow(name: str, definition: dict[str, Any]) -> Any:
    from workflows.models import Workflow, WorkflowVersion

    flow = Workflow.objects.create(name=name)
    version = WorkflowVersion.objects.create(workflow=flow, number=1, definition=definition)
    flow.active_version = version
    flow.save(update_fields=["active_version"])
    return flow


def start(flow: Any) -> Any:
    from workflows import runs
    from workflows.models import WorkflowRun

    return runs.run_start(workflow=flow, inputs={}, trigger=WorkflowRun.TriggerKind.API)


def wait_all(run_ids: list[int], *, timeout: float = 300) -> None:
    from workflows.models import RUN_FINISHED, WorkflowRun

    deadline = time.monotonic() + timeout
    pending = set(run_ids)
    while pending:
        done = WorkflowRun.objects.filter(pk__in=pending, status__in=RUN_FINISHED)
        pending -= set(done.values_list("pk", flat=True))
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} runs did not finish in {timeout} s")
        if pending:
            # Every figure comes from the engine's own timestamps, so polling faster would not
            # change them, only take CPU from the worker and the database being measured.
            time.sleep(0.05)
    bad = WorkflowRun.objects.filter(pk__in=run_ids).exclude(status="succeeded").first()
    if bad is not None:
        raise RuntimeError(f"run {bad.pk} ended {bad.status}: {bad.error}")


def step_latencies(run_id: int) -> list[float]:
    """Seconds from each step's predecessor completing (run creation for the first) to its
    own completion, in completion order."""
    from workflows.models import StepRun, WorkflowRun

    created = WorkflowRun.objects.values_list("created_at", flat=True).get(pk=run_id)
    rows = StepRun.objects.filter(run_id=run_id, parent__isnull=True)
    finished = sorted(f for f in rows.values_list("finished_at", flat=True) if f is not None)
    marks = [created, *finished]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(marks)]


def run_wall(run_id: int) -> float:
    from workflows.models import WorkflowRun

    created, finished = WorkflowRun.objects.values_list("created_at", "finished_at").get(pk=run_id)
    if finished is None:
        raise RuntimeError(f"run {run_id} has not finished")
    return (finished - created).total_seconds()


def measure_celery(samples: int) -> list[float]:
    from config.celery import app

    noop = app.tasks["celery.accumulate"]
    for _ in range(20):
        noop.delay(1).get(timeout=30)
    values = []
    for _ in range(samples):
        started = time.perf_counter()
        noop.delay(1).get(timeout=30)
        values.append(time.perf_counter() - started)
    return values


def measure_chains(flow: Any, runs: int) -> tuple[list[float], list[float]]:
    """(per-step latencies, run wall times)."""
    latencies: list[float] = []
    walls: list[float] = []
    for _ in range(runs):
        run = start(flow)
        wait_all([run.pk])
        latencies += step_latencies(run.pk)
        walls.append(run_wall(run.pk))
    return latencies, walls


def measure_gateway(samples: int) -> list[float]:
    from agents.gateway.calls import gateway_complete
    from agents.providers.base import ChatRequest, Message

    request = ChatRequest(
        model="", messages=(Message(role="user", content="Step 3 of the chain"),), max_tokens=64
    )
    values = []
    for _ in range(samples):
        started = time.perf_counter()
        gateway_complete(model="offline:demo", request=request)
        values.append(time.perf_counter() - started)
    return values


def measure_publish(samples: int) -> list[float]:
    from workflows.events import run_changed

    values = []
    for i in range(samples):
        started = time.perf_counter()
        run_changed(10**9 + i, [1])
        values.append(time.perf_counter() - started)
    return values


def measure_throughput(flow: Any, concurrent: int) -> tuple[int, float]:
    from workflows.models import StepRun, WorkflowRun

    run_ids = [start(flow).pk for _ in range(concurrent)]
    wait_all(run_ids, timeout=600)
    runs = WorkflowRun.objects.filter(pk__in=run_ids)
    first = min(runs.values_list("created_at", flat=True))
    last = max(f for f in runs.values_list("finished_at", flat=True) if f is not None)
    steps = StepRun.objects.filter(run_id__in=run_ids, status="succeeded").count()
    return steps, (last - first).total_seconds()


def row(name: str, values: list[float], baseline: float) -> str:
    median = statistics.median(values)
    return (
        f"| {name:<44} | {ms(median):>9.2f} | {ms(p95(values)):>9.2f} "
        f"| {median / baseline:>7.2f}× |"
    )


def profile(flow: Any) -> None:
    """cProfile and query count of executing chains inline in this process, before the worker
    starts (the messages the engine sends are purged afterwards): the engine's own cost."""
    import cProfile
    import io
    import pstats

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from workflows import engine
    from workflows.models import StepRun

    def execute_chain() -> None:
        run = start(flow)
        for _ in range(CHAIN_LENGTH):
            step = StepRun.objects.filter(run=run, status="queued").first()
            if step is None:
                break
            engine.step_execute(step.pk)

    execute_chain()  # warm
    timings: list[tuple[str, float]] = []

    def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timings.append((sql, time.perf_counter() - started))

    with CaptureQueriesContext(connection) as queries, connection.execute_wrapper(timed):
        started = time.perf_counter()
        execute_chain()
        elapsed = time.perf_counter() - started
    say(
        f"• inline: {ms(elapsed) / CHAIN_LENGTH:.2f} ms and {len(queries) / CHAIN_LENGTH:.1f} "
        "queries per step (including the bench's own lookup of the next step)"
    )
    by_kind: dict[str, list[float]] = {}
    for sql, seconds in timings:
        words = sql.split()
        kind = " ".join(words[:1] + [w for w in words[1:8] if w.startswith('"')][:1])
        by_kind.setdefault(kind, []).append(seconds)
    say("    (statements sent through Django's cursor; BEGIN/COMMIT are not among them)")
    for kind, times in sorted(by_kind.items(), key=lambda item: -sum(item[1])):
        per_step = ms(sum(times)) / CHAIN_LENGTH
        say(f"    {len(times) / CHAIN_LENGTH:5.1f}/step {per_step:6.2f} ms/step {kind[:100]}")
    for query in queries.captured_queries[:40]:
        say("    " + query["sql"][:160])
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(5):
        execute_chain()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(
        r"workflows/|_commit|apply_async|tenant_schemas_celery", 40
    )
    say(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="sequential chain runs per kind")
    parser.add_argument("--concurrent", type=int, default=50, help="runs for the throughput")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=300,
        help="the worker's WORKER_DB_CONN_MAX_AGE (0: a new connection per task)",
    )
    parser.add_argument("--profile", action="store_true", help="profile one chain inline")
    args = parser.parse_args(argv)
    if args.runs < 3 or args.concurrent < 1:
        raise SystemExit("--runs at least 3, --concurrent at least 1")
    database = f"bench_engine_{os.getpid()}"

    from config.embedded import embedded_services

    failed = False
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        os.environ.update(stack.enter_context(embedded_services(root=ROOT / ".local" / "bench")))
        _admin("CREATE DATABASE {}", database)
        stack.callback(drop_database, database)
        os.environ["BENCH_DATABASE_NAME"] = database
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
        import django

        django.setup()
        from django_tenants.utils import schema_context

        from config.celery import app

        try:
            workspace = setup_workspace()
            if args.profile:
                with schema_context(workspace.schema_name):
                    profile(workflow("Profiled chain", chain("transform")))
            app.control.purge()
            stack.enter_context(worker(args.concurrency, args.conn_max_age))
            say(
                f"• worker: prefork × {args.concurrency}, prefetch multiplier "
                f"{app.conf.worker_prefetch_multiplier}, connections kept {args.conn_max_age} s"
            )
            results["celery"] = measure_celery(max(200, args.runs * 10))
            with schema_context(workspace.schema_name):
                transforms = workflow("Chain of transforms", chain("transform"))
                llms = workflow("Chain of offline LLM calls", chain("llm"))
                wide = workflow("Fan-out", fan_out())
                mixed = workflow("Transform and code steps", mixed_chain())
                measure_chains(transforms, 3)  # warm the worker (imports, plans, connections)
                measure_chains(llms, 2)
                measure_chains(wide, 2)
                measure_chains(mixed, 2)
                say(f"• {args.runs} runs of the 20-step transform chain")
                results["chain"] = measure_chains(transforms, args.runs)
                say(f"• {args.runs} runs of the 20-step offline-LLM chain")
                results["llm"] = measure_chains(llms, args.runs)
                results["gateway"] = measure_gateway(200)
                say(f"• {args.runs} runs of the 10-wide fan-out")
                results["fan"] = measure_chains(wide, args.runs)
                results["publish"] = measure_publish(200)
                say(f"• throughput: {args.concurrent} concurrent runs of the transform chain")
                results["throughput"] = measure_throughput(transforms, args.concurrent)
                say(f"• {args.runs} runs of the transform/code chain")
                results["code"] = measure_code_steps(mixed, args.runs)
        except BaseException:
            failed = True
            traceback.print_exc(file=sys.stderr)
    if failed:
        return 1

    celery = results["celery"]
    baseline = statistics.median(celery)
    chain_steps, _ = results["chain"]
    llm_steps, _ = results["llm"]
    gateway = statistics.median(results["gateway"])
    llm_overhead = [v - gateway for v in llm_steps]
    _, fan_walls = results["fan"]
    fan_per_step = [w / (FAN_OUT + 2) for w in fan_walls]
    steps, seconds = results["throughput"]
    throughput = steps / seconds

    print("| measurement (baseline: bare Celery round trip) | median ms |    p95 ms |   ratio |")
    print("| -------------------------------------------- | --------: | --------: | ------: |")
    print(row("celery no-op task .delay().get()", celery, baseline))
    print(row("per step, 20-step transform chain", chain_steps, baseline))
    print(row("per step, 20-step offline-LLM chain", llm_steps, baseline))
    print(row("  minus a direct offline gateway call", llm_overhead, baseline))
    print(row("per step, 10-wide fan-out (wall ÷ 12)", fan_per_step, baseline))
    print(row("in-process gateway_complete (offline)", results["gateway"], baseline))
    print(row("in-process run_changed (live event)", results["publish"], baseline))
    code_steps, transform_steps = results["code"]
    print(row("per step, code steps of a transform/code chain", code_steps, baseline))
    print(row("per step, its transform steps", transform_steps, baseline))
    print()
    overhead = statistics.median(chain_steps)
    ratio = overhead / baseline
    verdict = "met" if ratio <= RATIO_TARGET else "MISSED"
    print(
        f"step overhead: {ms(overhead):.2f} ms median = {ratio:.2f}× the Celery round trip "
        f"(target ≤ {RATIO_TARGET}×: {verdict})"
    )
    verdict = "met" if throughput >= THROUGHPUT_TARGET else "MISSED"
    print(
        f"throughput: {steps} steps of {args.concurrent} concurrent runs in {seconds:.2f} s = "
        f"{throughput:.1f} steps/s (target ≥ {THROUGHPUT_TARGET:.0f}: {verdict})"
    )
    transform_median = statistics.median(transform_steps)
    added = [v - transform_median for v in code_steps]
    code_overhead = statistics.median(added)
    verdict = "met" if ms(code_overhead) <= CODE_STEP_TARGET_MS else "MISSED"
    print(
        f"code step overhead: {ms(code_overhead):.2f} ms median, {ms(p95(added)):.2f} ms p95 "
        f"added to a transform step's {ms(transform_median):.2f} ms "
        f"({statistics.median(code_steps) / transform_median:.2f}× a transform step; "
        f"target ≤ {CODE_STEP_TARGET_MS:.0f} ms: {verdict})"
    )
    print(
        f"celery_rtt_median_ms={ms(baseline):.3f} step_overhead_median_ms={ms(overhead):.3f} "
        f"step_overhead_ratio={ratio:.3f} steps_per_s={throughput:.1f} "
        f"code_step_overhead_median_ms={ms(code_overhead):.3f}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
