"""What a Celery task inherits from whoever queued it, besides its workspace (tenant-schemas-celery
carries that): the request id, for logs and outgoing webhooks, and the trace context, for spans.
Also what the worker counts about each task (core/metrics.py).

On publish the current request id (`core.request_context.request_id_var`) and `traceparent` go
into the message's headers; before the task runs they are restored (a task queued by no request,
a beat tick, takes its own task id as request id), and after it they are put back. So a run
started by a request logs every step, in every worker, under that request's id, and its
webhook delivery carries it as `X-Request-ID`. config/celery.py connects these to Celery's
signals.
"""

from __future__ import annotations

import contextvars
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Span

from core import metrics, tracing
from core.request_context import request_id_var

REQUEST_ID_HEADER = "request_id"
_TRACE_HEADERS = ("traceparent", "tracestate")
_OUTCOMES = {"SUCCESS": "success", "FAILURE": "failure", "RETRY": "retry"}


@dataclass
class _Running:
    request_token: contextvars.Token[str]
    span: Span
    span_token: object


_running: dict[str, _Running] = {}


def on_publish(headers: MutableMapping[str, Any] | None) -> None:
    if headers is None:
        return
    request_id = request_id_var.get()
    if request_id != "-":
        headers.setdefault(REQUEST_ID_HEADER, request_id)
    tracing.inject_headers(headers)


def header_of(task: Any, name: str) -> Any:
    """A custom header of the message `task` is running (Celery exposes them as request
    attributes, and under `request.headers` for some protocols)."""
    request = getattr(task, "request", None)
    headers = getattr(request, "headers", None) or {}
    return headers.get(name) or getattr(request, name, None)


def on_task_start(*, task_id: str, task: Any) -> None:
    request_id = header_of(task, REQUEST_ID_HEADER) or task_id
    request_token = request_id_var.set(str(request_id))
    carrier = {h: v for h in _TRACE_HEADERS if (v := header_of(task, h))}
    span, span_token = tracing.task_span_start(str(task.name), carrier)
    _running[task_id] = _Running(request_token, span, span_token)
    metrics.task_started(task_id)


def on_task_end(*, task_id: str, task: Any, state: str | None) -> None:
    outcome = _OUTCOMES.get(state or "", "failure")
    metrics.task_finished(task_id=task_id, task=str(task.name), outcome=outcome)
    running = _running.pop(task_id, None)
    if running is None:
        return
    tracing.task_span_end(running.span, running.span_token, outcome=outcome)
    try:
        request_id_var.reset(running.request_token)
    except ValueError:  # set in another context (a thread pool): leave it to that context
        request_id_var.set("-")
