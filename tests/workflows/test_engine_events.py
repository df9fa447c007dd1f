"""What the engine tells live run pages: `run.changed` messages on the run's channel group,
sent in the background after commit and coalesced per run (workflows/events.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from tenants.schemas import current_schema
from tests.helpers.workflows import flow, start, step, transform
from workflows import engine, events
from workflows.models import StepRun, WorkflowRun

pytestmark = pytest.mark.django_db


def listen(run: WorkflowRun) -> Callable[[], list[dict[str, Any]]]:
    """Subscribe to the run's group, as the run page's consumer does; the returned function
    sends what the engine noted and returns the messages that arrived."""
    layer = get_channel_layer()
    assert layer is not None
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.run_group(current_schema(), run.pk), channel)

    async def drain() -> list[dict[str, Any]]:
        received = []
        while True:
            try:
                received.append(await asyncio.wait_for(layer.receive(channel), timeout=0.5))
            except TimeoutError:
                return received

    def messages() -> list[dict[str, Any]]:
        events.flush()
        return async_to_sync(drain)()

    return messages


def test_a_step_sends_one_message_naming_the_run_and_the_steps_that_changed(
    in_alpha: None, django_capture_on_commit_callbacks: Any
) -> None:
    run = start(flow([transform("a", 1), transform("b", "{{ steps.a + 1 }}")], [("a", "b")]))
    a, b = step(run, "a"), step(run, "b")
    messages = listen(run)

    with django_capture_on_commit_callbacks(execute=True):
        assert engine.step_execute(a.pk) == "done"  # a: running, then succeeded; b: queued

    # The claim's message and the completion's come within the coalescing window: one message.
    assert messages() == [{"type": "run.changed", "run": run.pk, "steps": sorted([a.pk, b.pk])}]
    assert StepRun.objects.get(pk=b.pk).status == "queued"  # what the page re-reads


def test_changes_of_different_runs_go_to_each_run_only(
    in_alpha: None, django_capture_on_commit_callbacks: Any
) -> None:
    first = start(flow([transform("a", 1)], []))
    second = start(flow([transform("a", 2)], []))
    first_messages, second_messages = listen(first), listen(second)

    with django_capture_on_commit_callbacks(execute=True):
        engine.step_execute(step(first, "a").pk)

    assert [m["run"] for m in first_messages()] == [first.pk]
    assert second_messages() == []


def test_a_run_goes_on_when_live_events_cannot_be_sent(
    in_alpha: None, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    def redis_down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(events, "get_channel_layer", redis_down)
    run = start(flow([transform("a", 1)], []))

    with django_capture_on_commit_callbacks(execute=True):
        assert engine.step_execute(step(run, "a").pk) == "done"

    run.refresh_from_db()
    assert run.status == "succeeded"
    assert run.output == {"a": 1}
