"""Telling live run pages that something changed.

The engine calls `run_changed(run_id, step_ids)` after each transition commits (through
`transaction.on_commit`). The message is tiny — which run, which step runs — and the run page's
consumer re-reads those rows from the database and sends the rendered fragments, so a message
can never carry stale state and a dropped one is repaired by the next or by a reconnect (which
renders the whole run from the database first).

Group: `<schema>.workflow-run.<run_id>` (group names are global in Redis).

Open canvases of a workflow (workflows/builder/consumers.py) are told the same way when a
version of it is saved or a run of it starts: `workflow_saved` and `workflow_run_started`, to
`<schema>.workflow-canvas.<workflow_id>`, sent as they come (not coalesced; they are rare).

Publishing does not wait for Redis, and messages are coalesced: each process keeps one event
loop in a daemon thread (so one channel-layer connection pool), and `run_changed` only notes the
step ids; within `COALESCE_SECONDS` of a run's first unsent change, one message carries every
step id noted for that run since. The consumer re-reads the rows either way, so a merged message
shows the same state the separate ones would have, a little later. (A synchronous
`async_to_sync(group_send)` built a new loop and Redis connection per call, ~5 ms, twice per
step on the engine's critical path; sending each message from the thread still cost ~1.5 ms of
the worker's CPU per step.) `flush()` sends what is noted and waits for it; the Celery worker
calls it when a worker process shuts down (config/celery.py), other processes at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer

from tenants.schemas import current_schema

logger = logging.getLogger(__name__)

COALESCE_SECONDS = 0.1
MAX_IN_FLIGHT = 1000  # sends started and unfinished (Redis down or slow): beyond, new ones drop
# Sends talking to Redis at once. The channel layer's pool holds 100 connections and raises
# (it does not wait) when they are all busy: 50 concurrent runs once lost events that way.
MAX_CONCURRENT_SENDS = 16


def run_group(schema_name: str, run_id: int) -> str:
    return f"{schema_name}.workflow-run.{run_id}"


def run_changed(run_id: int, step_ids: Iterable[int] = ()) -> None:
    """Publish after commit, without waiting for Redis. Never raises: a live page is a
    convenience, the database is the truth, and a run must not fail because Redis hiccuped."""
    try:
        if get_channel_layer() is None:
            return
        _publisher().note(run_group(current_schema(), run_id), run_id, step_ids)
    except Exception:  # see docstring
        logger.warning("could not publish a change of workflow run %s", run_id, exc_info=True)


def canvas_group(schema_name: str, workflow_id: int) -> str:
    return f"{schema_name}.workflow-canvas.{workflow_id}"


def workflow_saved(schema_name: str, workflow_id: int, version: int) -> None:
    """Version `version` of the workflow was saved (call after commit). Never raises."""
    _tell_canvases(schema_name, workflow_id, {"type": "canvas.saved", "version": version})


def workflow_run_started(schema_name: str, workflow_id: int, run_id: int) -> None:
    """A run of the workflow was created (call after commit). Never raises."""
    _tell_canvases(schema_name, workflow_id, {"type": "canvas.run", "run": run_id})


def _tell_canvases(schema_name: str, workflow_id: int, message: dict[str, Any]) -> None:
    try:
        if get_channel_layer() is None:
            return
        _publisher().send(canvas_group(schema_name, workflow_id), message)
    except Exception:  # as for run_changed: the database is the truth
        logger.warning("could not tell the canvases of workflow %s", workflow_id, exc_info=True)


def flush(timeout: float = 2.0) -> None:
    """Send what was noted so far and wait (at most `timeout` seconds) until it is sent."""
    publisher = _current
    if publisher is not None and publisher.pid == os.getpid():
        publisher.flush(timeout)


class _Publisher:
    """One event loop in a daemon thread. `note` is called from any thread; the loop sends."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.lock = threading.Lock()
        self.noted: dict[str, tuple[int, set[int]]] = {}  # group → (run id, step ids)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.sending = asyncio.Semaphore(MAX_CONCURRENT_SENDS)  # binds to self.loop on first use
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="workflow-live-events", daemon=True
        )
        self.thread.start()

    def note(self, group: str, run_id: int, step_ids: Iterable[int]) -> None:
        with self.lock:
            noted = self.noted.get(group)
            if noted is not None:
                noted[1].update(step_ids)
                return
            self.noted[group] = (run_id, set(step_ids))
        self.loop.call_soon_threadsafe(self.loop.call_later, COALESCE_SECONDS, self._send, group)

    def send(self, group: str, message: dict[str, Any]) -> None:
        """Send `message` as it is, soon (from any thread)."""
        self.loop.call_soon_threadsafe(self._send_now, group, message)

    def _send_now(self, group: str, message: dict[str, Any]) -> None:  # on the loop
        if len(self.in_flight) >= MAX_IN_FLIGHT:
            logger.warning("dropped a canvas event: %s sends unfinished", len(self.in_flight))
            return
        task = self.loop.create_task(self._group_send(group, message))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    def _send(self, group: str) -> None:  # on the loop
        with self.lock:
            noted = self.noted.pop(group, None)
        if noted is None:
            return
        if len(self.in_flight) >= MAX_IN_FLIGHT:
            logger.warning("dropped a live run event: %s sends unfinished", len(self.in_flight))
            return
        run_id, step_ids = noted
        message = {"type": "run.changed", "run": run_id, "steps": sorted(step_ids)}
        task = self.loop.create_task(self._group_send(group, message))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _group_send(self, group: str, message: dict[str, Any]) -> None:
        try:
            async with self.sending:
                await get_channel_layer().group_send(group, message)
        except Exception:  # see run_changed
            logger.warning("could not publish %s to %s", message["type"], group, exc_info=True)

    async def _drain(self) -> None:
        with self.lock:
            groups = list(self.noted)
        for group in groups:
            self._send(group)
        if self.in_flight:
            await asyncio.wait(list(self.in_flight))

    def flush(self, timeout: float) -> None:
        future = asyncio.run_coroutine_threadsafe(self._drain(), self.loop)
        try:
            future.result(timeout)
        except Exception:  # a timeout: the process is going away regardless
            logger.warning("live run events still unsent after %s s", timeout)


_current: _Publisher | None = None
_create = threading.Lock()


def _publisher() -> _Publisher:
    """This process's publisher; a forked child (a prefork worker) starts its own, since the
    parent's thread does not survive the fork."""
    global _current
    publisher = _current
    if publisher is not None and publisher.pid == os.getpid():
        return publisher
    with _create:
        if _current is None or _current.pid != os.getpid():
            _current = _Publisher()
        return _current


def _after_fork() -> None:
    global _current, _create
    _current, _create = None, threading.Lock()  # the parent's may have been held mid-fork


os.register_at_fork(after_in_child=_after_fork)
atexit.register(flush)
