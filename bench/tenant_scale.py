"""Deploys and connections at thousands of workspaces.

    .venv/bin/python bench/tenant_scale.py [--workspaces 1000] [--baseline-sample 20]

Self-contained like bench/tenant_provisioning.py: embedded PostgreSQL and Valkey in
.local/bench/ unless DATABASE_URL / REDIS_URL are set, a fresh database
`bench_scale_<pid>` dropped at the end, and the probe app's migrations in a temporary package
(no tracked file changes). It:

1. provisions N workspaces through `workspace_create` (the clone of the template), timing
   each: median and p95 of the first and the last hundred;
2. runs `migrate_workspaces` with nothing to apply (three times), and as the baseline
   django-tenants' `migrate_schemas --tenant` on `--baseline-sample` schemas, scaled to N
   (running it over all N takes minutes);
3. adds one nullable column to the probe app and times `migrate_workspaces` applying it to
   every workspace (and checks every schema has it);
4. counts `pg_class` rows and the database size;
5. touches every workspace once on one connection (a few queries per workspace, as requests
   and tasks do) and reads that PostgreSQL backend's private memory from
   /proc/<pid>/smaps_rollup: kept for all N (the baseline) and with the platform's recycling
   after `DB_CONN_MAX_SCHEMAS` workspaces (the peak).

Last line:
    workspaces=… noop_migrate_s=… additive_migrate_s=… provision_p95_s=… conn_private_mb=…
(provision_p95_s is the p95 of the last hundred workspaces made: the slowest part.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, where bench/http.py would hide
# the standard library's `http` package (Django imports it): the project's root instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench.gateway import admin_sql, drop_database, p95, say  # noqa: E402
from bench.tenant_provisioning import ProbeMigrations  # noqa: E402

TARGETS = {"noop": 10.0, "additive": 60.0, "provision_p95": 0.2, "conn_mb": 100.0}


@dataclass
class Results:
    provision: list[float] = field(default_factory=list)
    noop: list[float] = field(default_factory=list)
    baseline_per_schema: float = 0.0
    additive: float = 0.0
    additive_reached: int = 0
    pg_class_rows: int = 0
    database_mb: float = 0.0
    conn_kept_mb: float = 0.0
    conn_recycled_peak_mb: float = 0.0
    conn_start_mb: float = 0.0
    recycles: int = 0


def timed(function: Any) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def provision(count: int, results: Results) -> None:
    from accounts.models import User
    from tenants import services

    user = User.objects.create_user(email="scale@bench.test", password=None)
    say(f"• provisioning {count} workspaces")
    for i in range(count):
        slug = f"scale-{i:05d}"
        results.provision.append(
            timed(lambda slug=slug: services.workspace_create(user=user, name=slug, slug=slug))
        )
        if (i + 1) % 100 == 0:
            last = results.provision[-100:]
            say(f"  {i + 1}/{count}: last hundred median {statistics.median(last):.3f} s")


def migrations(probe: ProbeMigrations, sample: int, results: Results) -> None:
    from django.core.management import call_command
    from django.db import connection

    from tenants.migrating import workspace_schemas

    for run in range(3):
        results.noop.append(timed(lambda: call_command("migrate_workspaces", verbosity=0)))
        say(f"• migrate_workspaces, nothing to apply (run {run + 1}): {results.noop[-1]:.2f} s")
    schemas = workspace_schemas()[:sample]
    started = time.perf_counter()
    for schema in schemas:
        call_command(
            "migrate_schemas", tenant=True, schema_name=schema, interactive=False, verbosity=0
        )
    results.baseline_per_schema = (time.perf_counter() - started) / len(schemas)
    connection.close()  # migrate_schemas leaves the search path on its last schema
    say(f"• baseline migrate_schemas: {results.baseline_per_schema:.3f} s per schema")

    probe.add(2, "scale_note")
    results.additive = timed(lambda: call_command("migrate_workspaces", verbosity=0))
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*) FROM information_schema.columns
                WHERE table_name = 'probe_document' AND column_name = 'scale_note'"""
        )
        results.additive_reached = int(cursor.fetchone()[0])
    say(f"• migrate_workspaces, one new column: {results.additive:.2f} s")


def catalogue(results: Results) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_class")
        results.pg_class_rows = int(cursor.fetchone()[0])
        cursor.execute("SELECT pg_database_size(current_database())")
        results.database_mb = int(cursor.fetchone()[0]) / 2**20


def _private_mb(pid: int) -> float:
    """Private memory of a PostgreSQL backend (its caches; shared buffers excluded)."""
    kilobytes = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            kilobytes += int(line.split()[1])
    return kilobytes / 1024


def _touch(workspace: Any) -> int:
    """What a request or task in a workspace does: a few tables of several apps."""
    from django.db import connection

    from agents.models import Agent, Conversation, KnowledgeChunk, UsageRecord
    from tenants import schemas
    from workflows.models import Workflow, WorkflowRun

    schemas.activate(workspace)
    for model in (Agent, Conversation, KnowledgeChunk, UsageRecord, Workflow, WorkflowRun):
        model.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def connection_memory(results: Results) -> None:
    from django.conf import settings
    from django.db import connection

    from tenants.connections import recycle_spread_connections
    from tenants.models import Workspace

    workspaces = list(Workspace.objects.filter(is_template=False).order_by("pk"))
    say(f"• one kept connection touching {len(workspaces)} workspaces")
    connection.close()
    pid = _touch(workspaces[0])
    results.conn_start_mb = _private_mb(pid)
    for workspace in workspaces:
        pid = _touch(workspace)
    results.conn_kept_mb = _private_mb(pid)
    connection.close()

    limit = settings.DB_CONN_MAX_SCHEMAS
    say(f"• the same with recycling after {limit} workspaces")
    connection.settings_dict["CONN_MAX_AGE"] = None  # kept, as in workers
    pids: set[int] = set()
    peak = 0.0
    for workspace in workspaces:
        pid = _touch(workspace)
        pids.add(pid)
        peak = max(peak, _private_mb(pid))
        recycle_spread_connections()  # what the end of each request or task does
    results.conn_recycled_peak_mb = peak
    results.recycles = len(pids) - 1
    connection.close()


def row(name: str, values: list[float], baseline: float | None = None) -> str:
    median = statistics.median(values)
    spread = p95(values) if len(values) >= 20 else max(values)
    ratio = f"{median / baseline:>8.3f}×" if baseline else " " * 9
    return f"| {name:<46} | {median:>9.3f} | {spread:>9.3f} | {ratio} |"


def report(args: argparse.Namespace, results: Results) -> None:
    n = args.workspaces
    first, last = results.provision[:100], results.provision[-100:]
    baseline_noop = results.baseline_per_schema * n
    print("| measurement (seconds unless named)             |    median |  p95/max |    ratio |")
    print("| ---------------------------------------------- | --------: | --------: | -------: |")
    print(row("provision one workspace, first hundred", first))
    print(row("provision one workspace, last hundred", last, statistics.median(first)))
    print(row(f"provision one workspace, all {n}", results.provision))
    print(row(f"migrate_schemas, nothing to apply (×{n} est.)", [baseline_noop]))
    print(row("migrate_workspaces, nothing to apply", results.noop, baseline_noop))
    print(row("migrate_workspaces, one new column", [results.additive], baseline_noop))
    print()
    print(
        f"baseline: django-tenants migrate_schemas {results.baseline_per_schema:.3f} s per schema "
        f"(measured on {args.baseline_sample}), so about {baseline_noop:.0f} s for {n}"
    )
    print(f"new column reached {results.additive_reached} schemas (workspaces + template)")
    print(
        f"catalogue: {results.pg_class_rows} pg_class rows, database {results.database_mb:.0f} MB"
    )
    per_workspace = (results.conn_kept_mb - results.conn_start_mb) / max(n - 1, 1)
    print(
        f"connection private memory: {results.conn_start_mb:.1f} MB after one workspace, "
        f"{results.conn_kept_mb:.1f} MB after all {n} on one kept connection "
        f"({per_workspace * 1024:.0f} kB per workspace); with recycling: peak "
        f"{results.conn_recycled_peak_mb:.1f} MB ({results.recycles} reconnects)"
    )
    provision_p95 = p95(last)
    checks = {
        "noop": statistics.median(results.noop),
        "additive": results.additive,
        "provision_p95": provision_p95,
        "conn_mb": results.conn_recycled_peak_mb,
    }
    print(
        "targets: "
        + ", ".join(
            f"{name} {value:.3f} ≤ {TARGETS[name]} {'met' if value <= TARGETS[name] else 'MISSED'}"
            for name, value in checks.items()
        )
    )
    print(
        f"workspaces={n} noop_migrate_s={checks['noop']:.2f} "
        f"additive_migrate_s={results.additive:.2f} provision_p95_s={provision_p95:.3f} "
        f"conn_private_mb={results.conn_recycled_peak_mb:.1f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspaces", type=int, default=1000)
    parser.add_argument("--baseline-sample", type=int, default=20)
    args = parser.parse_args(argv)
    if args.workspaces < 200 or not 1 <= args.baseline_sample <= args.workspaces:
        raise SystemExit("--workspaces: at least 200; --baseline-sample: 1 to --workspaces")
    database = f"bench_scale_{os.getpid()}"

    from config.embedded import embedded_services

    results = Results()
    failed = False
    with contextlib.ExitStack() as stack:
        os.environ.update(stack.enter_context(embedded_services(root=ROOT / ".local" / "bench")))
        admin_sql("CREATE DATABASE {}", database)
        stack.callback(drop_database, database)
        probe = ProbeMigrations(Path(stack.enter_context(tempfile.TemporaryDirectory())))
        os.environ["BENCH_DATABASE_NAME"] = database
        os.environ["BENCH_PROBE_MIGRATIONS"] = probe.package
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
        import django

        django.setup()
        from django.core.management import call_command

        from tenants import provisioning

        try:
            call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
            provisioning.template_workspace()
            provision(args.workspaces, results)
            migrations(probe, args.baseline_sample, results)
            catalogue(results)
            connection_memory(results)
        except BaseException:
            failed = True
            traceback.print_exc(file=sys.stderr)
    if failed:
        return 1
    report(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
