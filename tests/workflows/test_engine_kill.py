"""A worker killed with SIGKILL in the middle of a step: the broker redelivers the message
(acks_late + reject_on_worker_lost), the next worker continues the same attempt, replays the
model and tool calls the dead one recorded, and the run completes with every side effect and
ledger row exactly once.

Uses its own prefork worker (concurrency 1), so there is a child process to kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
from django.conf import settings
from django_tenants.utils import schema_context

from agents import services as agent_services
from agents.models import AllowedHost, UsageRecord
from config.celery import app
from tests.fakes import FakeOpenAI
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.helpers.agents import register_fake_model
from tests.helpers.personas import World, access_of
from tests.helpers.processes import worker_environment
from tests.helpers.workflows import make_workflow
from workflows import runs
from workflows.models import RecordedCall, StepRun, WorkflowRun

pytestmark = pytest.mark.worker


@pytest.fixture(scope="module")
def prefork_worker(django_db_setup: None) -> Iterator[subprocess.Popen[bytes]]:
    """A prefork worker with one child, on the default queue; yields the parent process."""
    app.control.purge()
    env = worker_environment()
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
            "1",
            "--prefetch-multiplier",
            "1",
            "-Q",
            settings.CELERY_TASK_DEFAULT_QUEUE,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
        ],
        env=env,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_for(check: Callable[[], Any], *, timeout: float = 60, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_killed_mid_step_completes_the_run_without_repeating_anything(
    committed_world: World, prefork_worker: subprocess.Popen[bytes], settings: Any
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    with (
        FakeOpenAI() as fake,
        WebhookReceiver() as side_effects,
        schema_context(committed_world.workspace_a.schema_name),
    ):
        model = register_fake_model(fake.base_url)
        AllowedHost.objects.create(host="127.0.0.1")
        owner = access_of(committed_world.owner, committed_world.workspace_a)
        poster = agent_services.agent_create(
            access=owner, name="Poster", model=model, tools=["http_request"]
        )
        # 1st model call: post the ticket; the tool call reaches `side_effects`.
        fake.queue(
            tool_calls=[
                (
                    "http_request",
                    {"url": side_effects.url, "method": "POST", "body": '{"ticket": 7}'},
                )
            ],
            usage={"prompt_tokens": 50, "completion_tokens": 20},
        )
        # 2nd model call: slow, so the worker is killed while waiting for it.
        fake.queue_delay(60, text="never seen")
        # The 2nd model call again, after the redelivery.
        fake.queue(text="Posted ticket 7.", usage={"prompt_tokens": 80, "completion_tokens": 5})
        workflow = make_workflow(
            {
                "schema_version": 1,
                "steps": [
                    {
                        "id": "post",
                        "type": "agent",
                        "config": {
                            "agent_id": poster.pk,
                            "agent": "Poster",
                            "prompt": "Post ticket 7",
                        },
                    },
                    {
                        "id": "done",
                        "type": "transform",
                        "config": {"value": "{{ steps.post.text }}"},
                    },
                ],
                "edges": [{"from": "post", "to": "done"}],
            }
        )
        run = runs.run_start(workflow=workflow, inputs={}, trigger=WorkflowRun.TriggerKind.API)

        wait_for(lambda: len(fake.requests) >= 2, what="the second model call")
        assert len(side_effects.received) == 1
        children = psutil.Process(prefork_worker.pid).children()
        assert len(children) == 1
        os.kill(children[0].pid, signal.SIGKILL)

        def finished() -> bool:
            run.refresh_from_db()
            return run.finished

        wait_for(finished, timeout=90, what="the run to finish after the kill")
        assert run.status == "succeeded", run.error
        assert run.output == {"done": "Posted ticket 7."}
        post = StepRun.objects.get(run=run, node_id="post")
        assert post.attempt == 1  # the redelivery continued the attempt the dead worker began
        assert post.output["tool_steps"][0]["tool"] == "http_request"

        assert len(side_effects.received) == 1  # the POST happened once
        assert len(fake.requests) == 3  # call 1 once, call 2 twice (the first never answered)
        ledger = list(UsageRecord.objects.order_by("pk").values_list("outcome", "input_tokens"))
        # No row twice; the call the dead worker was waiting for stays visible as `pending`
        # (sent, no outcome recorded: the provider may have charged for it).
        assert ledger == [("ok", 50), ("pending", 0), ("ok", 80)]
        assert (run.input_tokens, run.output_tokens) == (130, 25)
        calls = list(
            RecordedCall.objects.filter(step=post)
            .order_by("pk")
            .values_list("attempt", "kind", "index")
        )
        assert calls == [(1, "llm", 0), (1, "tool", 0), (1, "llm", 1)]
