"""OpenTelemetry traces: request → Celery task → workflow step → model call and tool call.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`configure()`, called once per process from
CoreConfig.ready()): then spans go to that OTLP/HTTP endpoint in batches (the exporter,
`opentelemetry-exporter-otlp-proto-http`, is a dependency; the SDK's batch processor restarts
its thread in a forked worker by itself). Unconfigured, the API hands out non-recording spans:
the instrumentation costs a few attribute look-ups.

Invariants:

- Every span carries the workspace (`agentmarket.workspace`, the schema name) where there is
  one, and the request id (`agentmarket.request_id`), so a trace and a log line meet.
- Model-call spans follow the GenAI semantic conventions (`gen_ai.operation.name`,
  `gen_ai.provider.name` and the older `gen_ai.system`, `gen_ai.request.model`,
  `gen_ai.response.model`, `gen_ai.usage.input_tokens` / `output_tokens`) plus
  `agentmarket.cost_usd`. Prompt and answer text are recorded (`gen_ai.input.messages`,
  `gen_ai.output.messages`) only when OTEL_RECORD_CONTENT is on: they are users' data.
- The context crosses into Celery in the task message's headers (`inject_headers` on publish,
  `extract_headers` before the task runs; config/celery.py connects both), so a step's span is
  the child of the request (or of the step) that queued it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from django.conf import settings
from django.db import connection
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from core.request_context import request_id_var

logger = logging.getLogger(__name__)

TRACER_NAME = "agentmarket"
WORKSPACE = "agentmarket.workspace"
REQUEST_ID = "agentmarket.request_id"
COST = "agentmarket.cost_usd"

_configured = False


def configure() -> bool:
    """Install the OTLP exporter when an endpoint is configured (once per process). True if
    traces are exported."""
    global _configured
    if _configured or not settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        return _configured
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": settings.OTEL_SERVICE_NAME})
    provider = TracerProvider(resource=resource)
    # The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (and _HEADERS, _TIMEOUT...) itself and
    # appends /v1/traces to it.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True
    logger.info("tracing: spans go to %s", settings.OTEL_EXPORTER_OTLP_ENDPOINT)
    return True


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def record_content() -> bool:
    return bool(settings.OTEL_RECORD_CONTENT)


def common_attributes() -> dict[str, str]:
    """The workspace (this thread's schema, unless public) and the request id."""
    attributes: dict[str, str] = {}
    schema = getattr(connection, "schema_name", None)
    if schema and schema != "public":
        attributes[WORKSPACE] = str(schema)
    request_id = request_id_var.get()
    if request_id != "-":
        attributes[REQUEST_ID] = request_id
    return attributes


@contextlib.contextmanager
def span(
    name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None
) -> Iterator[Span]:
    """A child span of the current one with the common attributes; an exception marks it as
    an error (and goes on)."""
    with tracer().start_as_current_span(name, kind=kind) as current:
        if current.is_recording():
            current.set_attributes({**common_attributes(), **(attributes or {})})
        yield current


def content(value: Any) -> str:
    """Text for a content attribute (JSON for structures)."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def failed(current: Span, message: str) -> None:
    if current.is_recording():
        current.set_status(Status(StatusCode.ERROR, message[:200]))


# --- Across Celery -----------------------------------------------------------------------------


def inject_headers(headers: MutableMapping[str, Any]) -> None:
    """Put the current trace context in a task message's headers (W3C `traceparent`)."""
    propagate.inject(headers)


def task_span_start(name: str, headers: Mapping[str, Any]) -> tuple[Span, object]:
    """Start the consumer span of a task whose message carried `headers`, as the current span.
    Returns what `task_span_end` needs."""
    parent = propagate.extract(headers)
    current = tracer().start_span(f"celery.task {name}", context=parent, kind=SpanKind.CONSUMER)
    if current.is_recording():
        current.set_attributes({"messaging.system": "celery", "celery.task_name": name})
    token = otel_context.attach(trace.set_span_in_context(current, parent))
    return current, token


def task_span_end(current: Span, token: object, *, outcome: str) -> None:
    if current.is_recording():
        current.set_attributes({"celery.outcome": outcome, **common_attributes()})
        if outcome == "failure":
            current.set_status(Status(StatusCode.ERROR, "task failed"))
    current.end()
    with contextlib.suppress(ValueError):  # detached in another context: nothing to restore
        otel_context.detach(token)  # type: ignore[arg-type]
