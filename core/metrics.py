"""The platform's Prometheus metrics: every series `/metrics` serves is defined here.

Invariants:

- **Labels are bounded.** No label carries a workspace, a user, a run or any other id, nor text
  a user typed: views are named by their URL route name (`unmatched` for a 404), tasks by their
  registered name, node types and statuses by their enums, models by the platform's price table
  (`other` for a model without a price: an alias target or an offline name can be anything).
  A thousand workspaces add no series; tests/core/test_metrics.py proves it.
- **Every process counts, one place sums.** Counters and histograms are written by each web
  and Celery worker process into files in `PROMETHEUS_MULTIPROC_DIR` (prometheus_client's
  multiprocess mode, set up by config/settings); `render()` sums the files of the host.
- **Point-in-time figures are read when scraped**, not kept by processes: the queue length,
  open circuit breakers and the billing outbox lag come from Redis and PostgreSQL through the
  collectors apps register with `register_scrape_collector` in `AppConfig.ready()` (core
  cannot import them: docs/decisions.md, "Layers"). A collector that fails is skipped and
  counted in `agentmarket_scrape_errors`; it never fails the scrape.

Instrumentation sits at the seams that already see the event (the request middleware, Celery's
task signals, the engine's step runner, the gateway's ledger writer, the run-finished hook), and
calls the small functions below, never `labels()` with a raw value.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from decimal import Decimal

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.hooks import RunFinished

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
PREFIX = "agentmarket"

# Buckets: requests and model calls take milliseconds to a minute; steps and runs up to hours.
_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SLOW = (0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600)

HTTP_REQUESTS = Counter(
    f"{PREFIX}_http_requests_total",
    "HTTP requests answered, by URL route name, method and status class.",
    ["view", "method", "status"],
)
HTTP_DURATION = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Time to answer an HTTP request, by URL route name.",
    ["view"],
    buckets=_FAST,
)
TASKS = Counter(
    f"{PREFIX}_celery_tasks_total",
    "Celery tasks run by workers, by task name and outcome (success, failure, retry).",
    ["task", "outcome"],
)
TASK_DURATION = Histogram(
    f"{PREFIX}_celery_task_duration_seconds",
    "Time a worker spent on a task, by task name.",
    ["task"],
    buckets=_SLOW,
)
STEPS = Counter(
    f"{PREFIX}_workflow_steps_total",
    "Workflow step attempts executed, by node type and outcome (succeeded, failed, waiting).",
    ["node_type", "outcome"],
)
STEP_DURATION = Histogram(
    f"{PREFIX}_workflow_step_duration_seconds",
    "Time one step attempt's node ran, by node type.",
    ["node_type"],
    buckets=_SLOW,
)
RUNS = Counter(
    f"{PREFIX}_runs_finished_total",
    "Agent and workflow runs that reached a final state, by kind and status.",
    ["kind", "status"],
)
RUN_DURATION = Histogram(
    f"{PREFIX}_run_duration_seconds",
    "Time from a run's start to its final state, by kind and status.",
    ["kind", "status"],
    buckets=_SLOW,
)
RUN_COST = Counter(
    f"{PREFIX}_run_cost_usd_total",
    "What finished runs cost (model calls), by kind.",
    ["kind"],
)
MODEL_CALLS = Counter(
    f"{PREFIX}_model_calls_total",
    "Model call attempts through the gateway, by provider, model and outcome "
    "(ok, error, skipped: circuit open).",
    ["provider", "model", "outcome"],
)
MODEL_TOKENS = Counter(
    f"{PREFIX}_model_tokens_total",
    "Tokens used by model calls, by provider, model and direction (input, output, cached_input).",
    ["provider", "model", "direction"],
)
MODEL_COST = Counter(
    f"{PREFIX}_model_cost_usd_total",
    "What model calls cost (the price table's figures), by provider and model.",
    ["provider", "model"],
)
MODEL_LATENCY = Histogram(
    f"{PREFIX}_model_call_duration_seconds",
    "Time a model call attempt took, by provider and model.",
    ["provider", "model"],
    buckets=_FAST,
)
BREAKER_OPENED = Counter(
    f"{PREFIX}_circuit_breaker_opened_total",
    "Times a provider target's circuit breaker opened, by provider.",
    ["provider"],
)
CACHE_LOOKUPS = Counter(
    f"{PREFIX}_response_cache_lookups_total",
    "Response cache lookups, by result (hit_exact, hit_semantic, miss).",
    ["result"],
)
WEBHOOK_DELIVERIES = Counter(
    f"{PREFIX}_webhook_delivery_attempts_total",
    "Outgoing webhook delivery attempts, by outcome "
    "(delivered, retrying, failed: gave up, refused: unsafe target).",
    ["outcome"],
)
SCRAPE_ERRORS = Counter(
    f"{PREFIX}_scrape_errors_total",
    "Scrape-time collectors that failed (Redis or the database unavailable), by collector.",
    ["collector"],
)

UNPRICED_MODEL = "other"
UNMATCHED_VIEW = "unmatched"


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def http_request(*, view: str, method: str, status: int, seconds: float) -> None:
    method = method if method in _METHODS else "other"
    HTTP_REQUESTS.labels(view=view, method=method, status=status_class(status)).inc()
    HTTP_DURATION.labels(view=view).observe(seconds)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# Celery: started-at per task id in this process (a worker runs its tasks one per process).
_task_started: dict[str, float] = {}


def task_started(task_id: str) -> None:
    _task_started[task_id] = time.perf_counter()


def task_finished(*, task_id: str, task: str, outcome: str) -> None:
    started = _task_started.pop(task_id, None)
    TASKS.labels(task=task, outcome=outcome).inc()
    if started is not None:
        TASK_DURATION.labels(task=task).observe(time.perf_counter() - started)


def step_executed(*, node_type: str, outcome: str, seconds: float) -> None:
    STEPS.labels(node_type=node_type, outcome=outcome).inc()
    STEP_DURATION.labels(node_type=node_type).observe(seconds)


def run_finished(*, kind: str, status: str, seconds: float, cost_usd: Decimal) -> None:
    RUNS.labels(kind=kind, status=status).inc()
    RUN_DURATION.labels(kind=kind, status=status).observe(seconds)
    if cost_usd:
        RUN_COST.labels(kind=kind).inc(float(cost_usd))


def count_finished_run(event: RunFinished) -> None:
    """The `run_finished` hook's subscriber (CoreConfig.ready): every agent and workflow run."""
    run_finished(
        kind=event.kind,
        status=event.status,
        seconds=event.latency_ms / 1000,
        cost_usd=event.cost_usd,
    )


def model_call(
    *,
    provider: str,
    model: str,
    outcome: str,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached_input_tokens: int = 0,
    cost_usd: Decimal = Decimal(0),
    seconds: float | None = None,
) -> None:
    """`model`: already bounded by the caller (a priced model's name, or UNPRICED_MODEL)."""
    MODEL_CALLS.labels(provider=provider, model=model, outcome=outcome).inc()
    for direction, count in (
        ("input", input_tokens),
        ("output", output_tokens),
        ("cached_input", cached_input_tokens),
    ):
        if count:
            MODEL_TOKENS.labels(provider=provider, model=model, direction=direction).inc(count)
    if cost_usd:
        MODEL_COST.labels(provider=provider, model=model).inc(float(cost_usd))
    if seconds is not None:
        MODEL_LATENCY.labels(provider=provider, model=model).observe(seconds)


def breaker_opened(*, provider: str) -> None:
    BREAKER_OPENED.labels(provider=provider).inc()


def cache_lookup(*, result: str) -> None:
    CACHE_LOOKUPS.labels(result=result).inc()


def webhook_attempt(*, outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()


# --- Scrape time -------------------------------------------------------------------------------

ScrapeCollector = Callable[[], Iterable[Metric]]
_scrape_collectors: dict[str, ScrapeCollector] = {}


def register_scrape_collector(name: str, collect: ScrapeCollector) -> None:
    """Add figures read when `/metrics` is scraped (idempotent by `name`). `collect` yields
    metric families (e.g. GaugeMetricFamily); it may raise, and is then skipped."""
    _scrape_collectors[name] = collect


class _ScrapeTime(Collector):
    def collect(self) -> Iterable[Metric]:
        for name, collect in list(_scrape_collectors.items()):
            try:
                families = list(collect())
            except Exception:
                logger.warning("metrics collector %s failed", name, exc_info=True)
                SCRAPE_ERRORS.labels(collector=name).inc()
                continue
            yield from families


def queue_lengths() -> Iterable[Metric]:
    """Messages waiting in each Celery queue the platform sends to (kombu keeps a queue as a
    Redis list of its name). What the worker autoscaler scales on (deploy/)."""
    import redis

    queues = [settings.CELERY_TASK_DEFAULT_QUEUE]  # every task goes there (no task routes)
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.llen(queue)
            lengths = pipe.execute()
    finally:
        client.close()
    family = GaugeMetricFamily(
        f"{PREFIX}_celery_queue_length",
        "Messages waiting in a Celery queue (read from the broker when scraped).",
        labels=["queue"],
    )
    for queue, length in zip(queues, lengths, strict=True):
        family.add_metric([queue], int(length))
    yield family


register_scrape_collector("celery_queue", queue_lengths)


def series_names() -> set[str]:
    """Every sample name `/metrics` can serve (`_total` of counters, `_bucket`/`_count`/`_sum`
    of histograms), including the scrape-time ones (so it reads Redis and the database): what
    deploy/'s dashboard and alert rules may name (tests/deploy checks them)."""
    families = [f for f in REGISTRY.collect() if f.name.startswith(PREFIX)]
    for collect in _scrape_collectors.values():
        families.extend(collect())
    names: set[str] = set()
    for family in families:
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(family.name)
    return names


def registry() -> CollectorRegistry:
    """The host's figures: every process's files summed, plus the scrape-time collectors."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        combined = CollectorRegistry(auto_describe=True)
        multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    else:  # only when someone removed the variable the settings set: this process's own
        combined = REGISTRY
    return combined


def render(*, scrape_time: bool = True) -> bytes:
    """The text exposition `/metrics` answers. `scrape_time`: include the queue, breaker and
    outbox figures (the web's endpoint does; a worker's exporter does not, so a scrape of
    several hosts counts them once)."""
    combined = registry()
    if scrape_time:
        combined = _with(combined, _ScrapeTime())
    return generate_latest(combined)


def _with(base: CollectorRegistry, extra: Collector) -> CollectorRegistry:
    merged = CollectorRegistry(auto_describe=False)
    merged.register(_Chain(base, extra))
    return merged


class _Chain(Collector):
    def __init__(self, base: CollectorRegistry, extra: Collector) -> None:
        self.base, self.extra = base, extra

    def collect(self) -> Iterable[Metric]:
        yield from self.base.collect()
        yield from self.extra.collect()
