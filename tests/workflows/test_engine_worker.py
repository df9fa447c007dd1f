"""The engine delivered through a real Celery worker process on the real broker: runs finish
on their own, each in its workspace's schema; duplicate deliveries give one result; a cancel
while a step runs discards its result; lost messages and dead executors are recovered."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import UsageRecord
from tenants.models import Workspace
from tenants.tasks import inventory
from tests.fakes import FakeOpenAI
from tests.helpers.agents import register_fake_model
from tests.helpers.personas import World, access_of
from tests.helpers.workflows import make_workflow
from workflows import runs
from workflows.models import StepRun, WorkflowRun
from workflows.tasks import execute_step, recover_stalled

pytestmark = pytest.mark.worker


def wait_for(check: Callable[[], Any], *, timeout: float = 60, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def in_schema(workspace: Workspace) -> Iterator[None]:
    with schema_context(workspace.schema_name):
        yield


def finished(run: WorkflowRun) -> Callable[[], bool]:
    def check() -> bool:
        run.refresh_from_db()
        return run.finished

    return check


def barrier() -> None:
    """Wait until the worker has handled everything queued before (one FIFO queue, one
    message at a time)."""
    inventory.apply_async().get(timeout=60)


CHAIN = {
    "schema_version": 1,
    "inputs": {"ticket": {"type": "string", "required": True}},
    "steps": [
        {
            "id": "classify",
            "type": "llm",
            "config": {
                "model": "offline:demo",
                "prompt": "Classify: {{ input.ticket }}",
                "output_schema": {
                    "type": "object",
                    "properties": {"urgent": {"type": "boolean"}},
                    "required": ["urgent"],
                },
            },
        },
        {
            "id": "is_urgent",
            "type": "condition",
            "config": {"expression": "steps.classify.data.urgent"},
        },
        {"id": "page", "type": "transform", "config": {"value": "paged"}},
        {"id": "reply", "type": "transform", "config": {"value": "Re: {{ input.ticket }}"}},
    ],
    "edges": [
        {"from": "classify", "to": "is_urgent"},
        {"from": "is_urgent", "to": "page", "branch": "true"},
        {"from": "is_urgent", "to": "reply", "branch": "false"},
    ],
    "output": {"answer": "{{ coalesce(steps.reply, steps.page) }}"},
}


def test_runs_finish_on_the_worker_each_in_its_own_workspace(
    committed_world: World, worker_queue: str
) -> None:
    started: dict[str, WorkflowRun] = {}
    for workspace, ticket in (
        (committed_world.workspace_a, "A's ticket"),
        (committed_world.workspace_b, "B's ticket"),
    ):
        with in_schema(workspace):
            workflow = make_workflow(CHAIN, name=f"Triage {workspace.slug}")
            started[workspace.slug] = runs.run_start(
                workflow=workflow, inputs={"ticket": ticket}, trigger=WorkflowRun.TriggerKind.API
            )
    for workspace in (committed_world.workspace_a, committed_world.workspace_b):
        with in_schema(workspace):
            run = started[workspace.slug]
            wait_for(finished(run), what=f"the run in {workspace.slug}")
            assert run.status == "succeeded", run.error
            assert run.input_tokens > 0
            statuses = dict(run.steps.values_list("node_id", "status"))
            assert statuses == {
                "classify": "succeeded",
                "is_urgent": "succeeded",
                "page": "skipped",
                "reply": "succeeded",
            }
    with in_schema(committed_world.workspace_a):
        assert started["alpha"].output == {"answer": "Re: A's ticket"}
    with in_schema(committed_world.workspace_b):
        assert started["bravo"].output == {"answer": "Re: B's ticket"}


def test_the_same_step_delivered_twice_runs_once(
    committed_world: World, worker_queue: str, settings: Any
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    with FakeOpenAI() as fake, in_schema(committed_world.workspace_a):
        model = register_fake_model(fake.base_url)
        workflow = make_workflow(
            {
                "schema_version": 1,
                "steps": [{"id": "ask", "type": "llm", "config": {"model": model, "prompt": "Hi"}}],
                "edges": [],
            }
        )
        run = runs.run_start(workflow=workflow, inputs={}, trigger=WorkflowRun.TriggerKind.API)
        ask = run.steps.get()
        execute_step.apply_async((ask.pk,))  # the same message twice more
        execute_step.apply_async((ask.pk,))
        wait_for(finished(run), what="the run")
        barrier()
        assert run.status == "succeeded"
        ask.refresh_from_db()
        assert ask.attempt == 1
        assert ask.output["text"] == fake.default_text
        assert len(fake.requests) == 1
        assert UsageRecord.objects.count() == 1


def test_cancel_while_a_step_runs_discards_its_result_but_counts_its_spend(
    committed_world: World, worker_queue: str, settings: Any
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    with FakeOpenAI() as fake, in_schema(committed_world.workspace_a):
        model = register_fake_model(fake.base_url)
        # Long enough to cancel during it, shorter than the test gateway timeout (2 s).
        fake.queue_delay(
            1.2, text="Late answer", usage={"prompt_tokens": 100, "completion_tokens": 10}
        )
        workflow = make_workflow(
            {
                "schema_version": 1,
                "steps": [
                    {"id": "slow", "type": "llm", "config": {"model": model, "prompt": "Think"}},
                    {
                        "id": "next",
                        "type": "transform",
                        "config": {"value": "{{ steps.slow.text }}"},
                    },
                ],
                "edges": [{"from": "slow", "to": "next"}],
            }
        )
        run = runs.run_start(workflow=workflow, inputs={}, trigger=WorkflowRun.TriggerKind.MANUAL)
        wait_for(lambda: fake.requests, what="the model call")
        owner = access_of(committed_world.owner, committed_world.workspace_a)
        runs.run_cancel(access=owner, run=run)

        slow = StepRun.objects.get(run=run, node_id="slow")
        wait_for(lambda: StepRun.objects.get(pk=slow.pk).finished, what="the running step")
        slow.refresh_from_db()
        run.refresh_from_db()
        assert run.status == "cancelled"
        assert slow.status == "cancelled"
        assert slow.output is None
        assert StepRun.objects.get(run=run, node_id="next").status == "cancelled"
        ledger = UsageRecord.objects.get()
        assert ledger.outcome == "ok"
        assert ledger.cost_usd > 0
        assert run.cost_usd == ledger.cost_usd  # what it spent is still the run's
        assert (run.input_tokens, run.output_tokens) == (100, 10)


def test_recovery_resends_lost_messages_and_steps_whose_worker_died(
    committed_world: World, worker_queue: str
) -> None:
    with in_schema(committed_world.workspace_a):
        workflow = make_workflow(
            {
                "schema_version": 1,
                "steps": [
                    {"id": "a", "type": "transform", "config": {"value": 1}},
                    {"id": "b", "type": "transform", "config": {"value": "{{ steps.a + 1 }}"}},
                ],
                "edges": [{"from": "a", "to": "b"}],
            }
        )
        version = workflow.active_version
        assert version is not None
        long_ago = timezone.now() - timezone.timedelta(hours=1)
        # A run whose entry step's message was lost (never sent):
        lost = WorkflowRun.objects.create(workflow=workflow, version=version, trigger="api")
        StepRun.objects.create(
            run=lost, node_id="a", node_type="transform", status="queued", queued_at=long_ago
        )
        StepRun.objects.create(run=lost, node_id="b", node_type="transform")
        # A run whose worker died while executing its entry step:
        dead = WorkflowRun.objects.create(
            workflow=workflow, version=version, trigger="api", status="running"
        )
        StepRun.objects.create(
            run=dead,
            node_id="a",
            node_type="transform",
            status="running",
            attempt=1,
            queued_at=long_ago,
            started_at=long_ago,
            lease_until=long_ago,
        )
        StepRun.objects.create(run=dead, node_id="b", node_type="transform")

    assert recover_stalled() == 2  # beat runs it in the public schema; it visits each workspace

    with in_schema(committed_world.workspace_a):
        for run in (lost, dead):
            wait_for(finished(run), what=f"run {run.pk}")
            assert run.status == "succeeded"
            assert run.output == {"b": 2}
        assert StepRun.objects.get(run=dead, node_id="a").attempt == 1  # the same attempt went on
