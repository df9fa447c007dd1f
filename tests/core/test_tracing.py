"""Traces and request ids across the broker: one API request that starts a workflow run gives
one connected trace (the request's server span → the Celery task → the workflow step → the
model call), with the GenAI attributes and the workspace, and no prompt text unless switched
on; the request's id is in the task's log lines and on the run's webhook delivery.

The run goes through the real broker to a Celery worker running in this process (a thread:
its spans reach this process's in-memory exporter); the headers cross Redis as in production."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import setup_logging
from django.conf import settings
from django.db import connection
from django_tenants.utils import schema_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agents.providers.base import Message
from agents.tools.loop import run_tool_loop
from config.celery import app
from core.logging import RequestIdFilter
from core.tracing import tracer
from tenants.models import Workspace
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.helpers.personas import World, key_client
from tests.workflows.test_engine_worker import CHAIN, wait_for
from workflows.models import WorkflowRun

pytestmark = pytest.mark.worker

_exporter = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """This process's tracer provider, exporting to memory (the global provider is set once
    per process; settings leave it unset when no OTLP endpoint is configured)."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        current.add_span_processor(SimpleSpanProcessor(_exporter))
    else:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    yield _exporter
    _exporter.clear()


@app.task(name="tests.close_worker_connection")  # type: ignore[untyped-decorator, unused-ignore]
def close_worker_connection() -> None:
    """Run last on the in-process worker: its thread's database connection must not outlive
    the test (the test database is dropped at the end of the session)."""
    connection.close()


@pytest.fixture
def worker(committed_world: World) -> Iterator[None]:
    # worker_init (config/celery.py) gives the workers' connection lifetime to this process's
    # settings: give the test process its own back afterwards.
    ages = {alias: db.get("CONN_MAX_AGE") for alias, db in settings.DATABASES.items()}
    # A receiver of setup_logging keeps Celery from replacing this process's log handlers.
    setup_logging.connect(_keep_logging)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
            yield
            close_worker_connection.apply_async().get(timeout=30)
    finally:
        setup_logging.disconnect(_keep_logging)
        for alias, age in ages.items():
            settings.DATABASES[alias]["CONN_MAX_AGE"] = age


def _keep_logging(**_: Any) -> None:
    pass


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _run_through_the_api(world: World, *, request_id: str, callback_url: str = "") -> int:
    api = key_client(world, ["workspace.view", "build", "run"])
    created = api.post(
        "/api/v1/workflows/", {"name": "Traced triage", "definition": CHAIN}, format="json"
    )
    assert created.status_code == 201, created.content
    body: dict[str, Any] = {"inputs": {"ticket": "The printer is on fire"}}
    if callback_url:
        body["callback_url"] = callback_url
    started = api.post(
        f"/api/v1/workflows/{created.json()['id']}/runs/",
        body,
        format="json",
        HTTP_X_REQUEST_ID=request_id,
    )
    assert started.status_code == 202, started.content
    assert started["X-Request-ID"] == request_id
    run_id = int(started.json()["id"])
    with schema_context(world.workspace_a.schema_name):

        def done() -> bool:
            return WorkflowRun.objects.get(pk=run_id).finished

        wait_for(done, what="the run on the worker")
        assert WorkflowRun.objects.get(pk=run_id).status == "succeeded"
    return run_id


def _by_id(finished: tuple[ReadableSpan, ...]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in finished}


def _chain(exporter: InMemorySpanExporter) -> list[ReadableSpan] | None:
    """[model call, step, task, request] once all four ended (a task's span ends after its
    body, so it may be exported a moment after the run reads finished)."""
    finished = exporter.get_finished_spans()
    by_id = _by_id(finished)
    chain = [s for s in finished if s.name == "chat demo"][:1]
    while chain and (parent := _parent(chain[-1], by_id)) is not None:
        chain.append(parent)
    return chain if len(chain) == 4 else None


def _parent(span: ReadableSpan, spans: dict[int, ReadableSpan]) -> ReadableSpan | None:
    return spans.get(span.parent.span_id) if span.parent is not None else None


def test_one_request_gives_one_trace_down_to_the_model_call(
    committed_world: World, worker: None, spans: InMemorySpanExporter, settings: Any
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # the webhook receiver is on loopback
    spans.clear()
    trace_logs = _Records()
    celery_trace = logging.getLogger("celery.app.trace")
    level = celery_trace.level
    celery_trace.addHandler(trace_logs)
    celery_trace.setLevel(logging.INFO)
    try:
        with WebhookReceiver() as receiver:
            _run_through_the_api(
                committed_world, request_id="req-trace-0001", callback_url=receiver.url
            )
            assert receiver.arrived.wait(timeout=60), "no completion webhook"
    finally:
        celery_trace.removeHandler(trace_logs)
        celery_trace.setLevel(level)

    # The webhook delivery (a second task, queued by the step task) carries the request's id.
    assert receiver.received[0]["headers"]["x-request-id"] == "req-trace-0001"
    # The worker's log lines about the run's tasks carry it too.
    step_logs = [r for r in trace_logs.records if "workflows.execute_step" in r.getMessage()]
    assert step_logs
    assert {r.request_id for r in step_logs} == {"req-trace-0001"}

    model_call, step, task, request = wait_for(lambda: _chain(spans), what="the connected spans")
    finished = spans.get_finished_spans()
    assert step.name == "workflow.step llm"
    assert task.name == "celery.task workflows.execute_step"
    assert request.name == "POST api/v1/workflows/<int:pk>/runs/"
    assert request.parent is None
    assert {model_call.context.trace_id, step.context.trace_id, task.context.trace_id} == {
        request.context.trace_id
    }

    schema = committed_world.workspace_a.schema_name
    attributes = dict(model_call.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == attributes["gen_ai.system"] == "offline"
    assert attributes["gen_ai.request.model"] == "demo"
    assert int(attributes["gen_ai.usage.input_tokens"]) > 0
    assert int(attributes["gen_ai.usage.output_tokens"]) > 0
    assert "agentmarket.cost_usd" in attributes
    assert attributes["agentmarket.workspace"] == schema
    assert attributes["agentmarket.request_id"] == "req-trace-0001"
    assert dict(step.attributes or {})["agentmarket.workspace"] == schema
    assert dict(request.attributes or {})["http.response.status_code"] == 202
    # No prompt or answer text by default: they are users' data.
    everything = " ".join(str(v) for s in finished for v in dict(s.attributes or {}).values())
    assert "printer is on fire" not in everything
    assert "gen_ai.input.messages" not in attributes

    # Later steps of the run are children of the step that queued them: one trace.
    later = [s for s in finished if s.name == "workflow.step transform"]
    assert later
    assert all(s.context.trace_id == request.context.trace_id for s in later)


def test_prompt_text_is_recorded_when_switched_on(
    committed_world: World, worker: None, spans: InMemorySpanExporter, settings: Any
) -> None:
    settings.OTEL_RECORD_CONTENT = True
    spans.clear()
    _run_through_the_api(committed_world, request_id="req-trace-0002")
    model_call, *_ = wait_for(lambda: _chain(spans), what="the connected spans")
    attributes = dict(model_call.attributes or {})
    assert "The printer is on fire" in str(attributes["gen_ai.input.messages"])
    assert "gen_ai.output.messages" in attributes


@pytest.mark.django_db
def test_a_tool_call_is_a_span_beside_the_model_calls(
    workspace_a: Workspace, spans: InMemorySpanExporter, settings: Any
) -> None:
    spans.clear()
    with schema_context(workspace_a.schema_name), tracer().start_as_current_span("turn"):
        result = run_tool_loop(
            model="offline:demo",
            tool_names=["calculator"],
            messages=[Message(role="user", content="What is 6 * 7?")],
        )
    assert result.steps
    finished = spans.get_finished_spans()
    turn = next(s for s in finished if s.name == "turn")
    tool = next(s for s in finished if s.name == "execute_tool calculator")
    calls = [s for s in finished if s.name == "chat demo"]
    assert len(calls) == 2  # asked, then answered with the tool's result
    parents = {s.parent.span_id if s.parent is not None else None for s in [tool, *calls]}
    assert parents == {turn.context.span_id}
    attributes = dict(tool.attributes or {})
    assert attributes["gen_ai.tool.name"] == "calculator"
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["agentmarket.workspace"] == workspace_a.schema_name
    assert "gen_ai.tool.call.arguments" not in attributes

    settings.OTEL_RECORD_CONTENT = True
    spans.clear()
    with schema_context(workspace_a.schema_name):
        run_tool_loop(
            model="offline:demo",
            tool_names=["calculator"],
            messages=[Message(role="user", content="What is 6 * 7?")],
        )
    tool = next(s for s in spans.get_finished_spans() if s.name == "execute_tool calculator")
    assert "6 * 7" in str(dict(tool.attributes or {})["gen_ai.tool.call.arguments"])


def test_with_an_endpoint_configured_spans_are_sent_over_otlp() -> None:
    """`configure()` in a process of its own (the global provider is set once per process):
    with OTEL_EXPORTER_OTLP_ENDPOINT it sends the spans, as OTLP protobuf, to the collector."""
    script = (
        "import django; django.setup()\n"
        "from opentelemetry import trace\n"
        "from core import tracing\n"
        "assert tracing.configure()\n"
        "with tracing.span('otlp-check'):\n"
        "    pass\n"
        "trace.get_tracer_provider().shutdown()\n"  # flushes the batch
    )
    with WebhookReceiver() as collector:
        endpoint = collector.url.removesuffix("/hooks/runs")
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        }
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
        assert collector.arrived.wait(timeout=30)
    (request,) = collector.received
    assert request["headers"]["content-type"] == "application/x-protobuf"
    assert b"otlp-check" in request["body"]
