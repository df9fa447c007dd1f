"""Enqueueing steps and running side effects after commit.

Steps are sent to the `workflows.execute_step` task by its name (workflows/tasks.py declares
it and calls the engine: the engine never imports the task module)."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from django.db import transaction

from core import recovery
from core.queue import enqueue_many
from tenants.schemas import current_schema

logger = logging.getLogger(__name__)

# The task that executes a step (workflows/tasks.py declares it under this name).
EXECUTE_STEP = "workflows.execute_step"

_executing_inline: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "engine_executing_inline", default=False
)


@contextmanager
def executing_inline() -> Iterator[None]:
    """Inside: the caller executes the steps itself (the demo seed, before any worker runs),
    so no `execute_step` message is sent. Otherwise each would reach the worker later, find
    its step finished and log it as "ignored". A step left queued is re-sent by recovery."""
    token = _executing_inline.set(True)
    try:
        yield
    finally:
        _executing_inline.reset(token)


def _send_many(messages: Iterable[tuple[int, float]]) -> None:
    """One `execute_step` message per (step run id, countdown), through one broker producer
    (`ignore_result`, as the task declares it)."""
    messages = list(messages)
    if not messages or _executing_inline.get():
        return
    recovery.mark_active(current_schema())
    enqueue_many(
        EXECUTE_STEP,
        [((step_id,), countdown) for step_id, countdown in messages],
        ignore_result=True,
    )


def _after_commit(function: Callable[[], None]) -> None:
    """Side effects after commit; a broker or Redis failure is logged, never raised (the
    state is committed, and recovery re-sends what was not sent). The work runs in the
    context it was registered in (`executing_inline`, the request id), whenever the commit.
    Failures are caught here rather than with `robust=True`, whose log line reads the
    function's `__qualname__`, which a `partial` lacks: that AttributeError failed the task."""
    context = contextvars.copy_context()

    def side_effects() -> None:
        try:
            context.run(function)
        except Exception:
            logger.exception("a side effect after commit failed; recovery re-sends the work")

    transaction.on_commit(side_effects)
