"""Benchmark workspace provisioning: cloning the template schema against running every tenant
migration, and one new tenant migration applied across 50 workspaces.

    .venv/bin/python bench/tenant_provisioning.py [--clones 20] [--migrations 5] [--tenants 50]
                                                  [--profile]

Self-contained: without DATABASE_URL / REDIS_URL it starts its own embedded PostgreSQL and
Valkey in .local/bench/ (never the developer's .local/pg). It always works in a fresh database
`bench_provisioning_<pid>` that it drops at the end, even on error. The new migrations go into a
temporary copy of `tests/probe/migrations` (MIGRATION_MODULES), so no tracked file changes.

The last line of stdout is machine-readable:
    clone_median_s=<x> clone_p95_s=<x> migrate_median_s=<x> migrate_50_tenants_s=<x>
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, where bench/http.py would hide
# the standard library's `http` package (Django imports it): the project's root instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

CLONE_TARGET_S = 2.0
MIGRATE_50_TARGET_S = 120.0

MIGRATION_TEMPLATE = """# Written by bench/tenant_provisioning.py into a scratch package.
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("probe", "{previous}")]

    operations = [
        migrations.AddField(
            model_name="document",
            name="{field}",
            field=models.CharField(max_length=40, null=True, blank=True),
        ),
    ]
"""


def say(message: str = "") -> None:
    print(message, file=sys.stderr, flush=True)


def progress(label: str, done: int, total: int, seconds: float) -> None:
    if sys.stderr.isatty():
        end = "\n" if done == total else ""
        print(
            f"\r  {label}: {done}/{total} (last {seconds:.3f} s)",
            end=end,
            file=sys.stderr,
            flush=True,
        )
    elif done == total or done % 10 == 0:
        say(f"  {label}: {done}/{total} (last {seconds:.3f} s)")


def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[18]


@dataclass
class TenantMigration:
    executor: str
    migration: str
    schemas: int
    seconds: float | None = None
    error: str | None = None
    applied_to: int = 0


@dataclass
class Results:
    clone: list[float] = field(default_factory=list)
    migrate: list[float] = field(default_factory=list)
    top_up: list[float] = field(default_factory=list)
    shared_migrate_s: float = 0.0
    template_s: float = 0.0
    structure_identical: bool = False
    structure_diff: list[str] = field(default_factory=list)
    records_identical: bool = False
    tenant_migrations: list[TenantMigration] = field(default_factory=list)
    workspaces: int = 0
    server_version: str = ""
    profile: str = ""


# --- The throw-away database ---------------------------------------------------------------


def _admin_connection() -> Any:
    import psycopg

    return psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)


def create_database(name: str) -> None:
    from psycopg import sql

    with _admin_connection() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(name: str) -> None:
    from psycopg import sql

    with contextlib.suppress(Exception):
        from django.db import connections

        connections.close_all()
    with _admin_connection() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    say(f"• dropped database {name}")


# --- The temporary copy of probe's migrations ------------------------------------------------


class ProbeMigrations:
    """`tests/probe/migrations` copied into a temporary package the bench can add to."""

    def __init__(self, directory: Path) -> None:
        self.package = f"bench_probe_migrations_{os.getpid()}"
        self.path = directory / self.package
        self.path.mkdir()
        for source in sorted((ROOT / "tests" / "probe" / "migrations").glob("*.py")):
            shutil.copy2(source, self.path / source.name)
        self.latest = sorted(p.stem for p in self.path.glob("0*.py"))[-1]
        sys.path.insert(0, str(directory))

    def add(self, number: int, field_name: str) -> str:
        name = f"{number:04d}_{field_name}"
        (self.path / f"{name}.py").write_text(
            MIGRATION_TEMPLATE.format(previous=self.latest, field=field_name)
        )
        self.latest = name
        importlib.invalidate_caches()  # the loader must see the new file at once
        return name


# --- The measurements ------------------------------------------------------------------------


def timed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def tenant_schemas() -> list[str]:
    from tenants.models import Workspace

    return list(
        Workspace.objects.exclude(schema_name="public")
        .order_by("schema_name")
        .values_list("schema_name", flat=True)
    )


def schemas_with_column(column: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*) FROM information_schema.columns
                WHERE table_name = 'probe_document' AND column_name = %s
                  AND table_schema <> 'public'""",
            [column],
        )
        return int(cursor.fetchone()[0])


def migration_records(schema: str) -> list[tuple[str, str]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f'SELECT app, name FROM "{schema}".django_migrations ORDER BY app, name')
        return [(app, name) for app, name in cursor.fetchall()]


def compare_structure(cloned: str, migrated: str, results: Results) -> None:
    from tenants import provisioning

    left, right = provisioning.describe_schema(cloned), provisioning.describe_schema(migrated)
    results.structure_identical = left == right
    for key in left:
        only_clone = [item for item in left[key] if item not in right[key]]
        only_migrated = [item for item in right[key] if item not in left[key]]
        results.structure_diff += [f"{key} only in clone: {item}" for item in only_clone[:5]]
        results.structure_diff += [f"{key} only in migrated: {item}" for item in only_migrated[:5]]
    results.records_identical = migration_records(cloned) == migration_records(migrated)


def measure_provisioning(args: argparse.Namespace, results: Results) -> None:
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import User
    from tenants import provisioning, services
    from tenants.models import Workspace

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        results.server_version = cursor.fetchone()[0]

    say("• migrate_schemas --shared")
    results.shared_migrate_s = timed(
        lambda: call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    )
    say(f"  {results.shared_migrate_s:.2f} s")
    say("• template workspace (migrated once)")
    results.template_s = timed(provisioning.template_workspace)
    say(f"  {results.template_s:.2f} s")

    user = User.objects.create_user(email="bench@bench.test", password=None)

    say(f"• (a) workspace_create (clone) x {args.clones}")
    for i in range(args.clones):
        slug = f"bench-clone-{i:03d}"
        results.clone.append(
            timed(
                lambda slug=slug: services.workspace_create(
                    user=user, name=f"Bench {slug}", slug=slug
                )
            )
        )
        progress("clone", i + 1, args.clones, results.clone[-1])

    say(f"• (b) create_schema with every tenant migration x {args.migrations}")

    def migrate_one(slug: str) -> None:
        workspace = Workspace(
            schema_name=services.workspace_schema_name(slug),
            name=f"Bench migrated {slug}",
            slug=slug,
            created_by=user,
        )
        workspace.save(verbosity=0)
        workspace.create_schema(check_if_exists=True, sync_schema=True, verbosity=0)

    for i in range(args.migrations):
        results.migrate.append(timed(lambda i=i: migrate_one(f"bench-migr-{i:03d}")))
        progress("migrate", i + 1, args.migrations, results.migrate[-1])

    if args.clones and args.migrations:
        compare_structure(
            services.workspace_schema_name("bench-clone-000"),
            services.workspace_schema_name("bench-migr-000"),
            results,
        )

    existing = Workspace.objects.filter(is_template=False).count()
    missing = max(0, args.tenants - existing)
    say(f"• (c) {existing} workspaces; cloning {missing} more to reach {args.tenants}")
    for i in range(missing):
        slug = f"bench-fill-{i:03d}"
        results.top_up.append(
            timed(
                lambda slug=slug: services.workspace_create(
                    user=user, name=f"Bench {slug}", slug=slug
                )
            )
        )
        progress("clone", i + 1, missing, results.top_up[-1])
    results.workspaces = Workspace.objects.filter(is_template=False).count()


def measure_tenant_migration(probe: ProbeMigrations, results: Results) -> None:
    from django.core.management import call_command

    runs = [("standard", 2, "bench_note"), ("multiprocessing", 3, "bench_note_mp")]
    for executor, number, column in runs:
        schemas = len(tenant_schemas())
        migration = probe.add(number, column)
        run = TenantMigration(executor=executor, migration=migration, schemas=schemas)
        results.tenant_migrations.append(run)
        say(
            f"• (c) migrate_schemas --tenant --executor={executor}: {migration} "
            f"across {schemas} schemas"
        )
        options: dict[str, Any] = {"tenant": True, "interactive": False, "verbosity": 0}
        if executor != "standard":
            options["executor"] = executor
        try:
            run.seconds = timed(lambda options=options: call_command("migrate_schemas", **options))
        except Exception as exc:  # report it; the other executor's figure still stands
            run.error = f"{type(exc).__name__}: {exc}"
            say(f"  failed: {run.error}")
            traceback.print_exc(file=sys.stderr)
        finally:
            from django.db import connection

            connection.close()  # the executors leave the search path on the last schema
        run.applied_to = schemas_with_column(column)
        if run.seconds is not None:
            say(f"  {run.seconds:.2f} s, column present in {run.applied_to}/{schemas} schemas")


def profile_one_schema(probe: ProbeMigrations, results: Results) -> None:
    """cProfile of applying one more migration to a single workspace schema."""
    from django.core.management import call_command

    from tenants import services

    migration = probe.add(4, "bench_note_profile")
    schema = services.workspace_schema_name("bench-clone-000")
    say(f"• profiling migrate_schemas --tenant -s {schema} ({migration})")
    profiler = cProfile.Profile()
    profiler.enable()
    call_command("migrate_schemas", tenant=True, schema_name=schema, interactive=False, verbosity=0)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(30)
    results.profile = out.getvalue()


# --- The report ------------------------------------------------------------------------------


def chosen_tenant_migration(results: Results) -> TenantMigration | None:
    done = [run for run in results.tenant_migrations if run.seconds is not None]
    return min(done, key=lambda run: run.seconds or 0.0) if done else None


def report(args: argparse.Namespace, results: Results, database: str) -> None:
    from importlib.metadata import version

    import django

    print()
    print(
        f"Workspace provisioning benchmark — database {database}, "
        f"PostgreSQL {results.server_version}, Django {django.get_version()}, "
        f"django-tenants {version('django-tenants')}, {os.cpu_count()} CPUs"
    )
    print(
        f"setup: migrate_schemas --shared {results.shared_migrate_s:.2f} s, "
        f"template schema {results.template_s:.2f} s"
    )
    print()
    baseline = median(results.migrate) if results.migrate else None
    print(f"{'method':<10}{'n':>4}{'median s':>11}{'p95 s':>9}{'ratio':>9}")
    for label, values in (("clone", results.clone), ("migrate", results.migrate)):
        if not values:
            print(f"{label:<10}{0:>4}{'-':>11}{'-':>9}{'-':>9}")
            continue
        ratio = f"{median(values) / baseline:.3f}" if baseline else "-"
        print(f"{label:<10}{len(values):>4}{median(values):>11.3f}{p95(values):>9.3f}{ratio:>9}")
    print("(ratio = median / migrate median)")
    if results.clone and baseline:
        print(f"clone is {baseline / median(results.clone):.0f}x faster than migrate (medians)")
    if results.top_up:
        print(
            f"top-up clones for (c): n={len(results.top_up)}, median "
            f"{median(results.top_up):.3f} s, p95 {p95(results.top_up):.3f} s"
        )
    if args.clones and args.migrations:
        print(f"structure identical: {'yes' if results.structure_identical else 'no'}")
        for line in results.structure_diff[:20]:
            print(f"  {line}")
        print(f"migration records identical: {'yes' if results.records_identical else 'no'}")
    print()
    chosen = chosen_tenant_migration(results)
    print(
        f"One new tenant migration across {results.workspaces} workspaces (+ the template schema):"
    )
    print(
        f"{'executor':<17}{'migration':<30}{'schemas':>8}{'total s':>10}{'per schema s':>14}"
        f"{'applied':>9}"
    )
    for run in results.tenant_migrations:
        if run.seconds is None:
            print(f"{run.executor:<17}{run.migration:<30}{run.schemas:>8}  failed: {run.error}")
            continue
        mark = "  <- migrate_50_tenants_s" if run is chosen else ""
        print(
            f"{run.executor:<17}{run.migration:<30}{run.schemas:>8}{run.seconds:>10.3f}"
            f"{run.seconds / max(run.schemas, 1):>14.3f}{run.applied_to:>9}{mark}"
        )
    print()
    if results.clone:
        met = median(results.clone) < CLONE_TARGET_S
        print(f"target clone median < {CLONE_TARGET_S:.0f} s: {'met' if met else 'MISSED'}")
    if chosen is not None and chosen.seconds is not None:
        met = chosen.seconds < MIGRATE_50_TARGET_S
        print(
            f"target {results.workspaces}-workspace migration < {MIGRATE_50_TARGET_S:.0f} s: "
            f"{'met' if met else 'MISSED'} ({chosen.executor})"
        )
    if results.profile:
        print()
        print("cProfile, one schema, one new migration (top 30 by cumulative time):")
        print(results.profile)


def summary_line(results: Results) -> str:
    def fmt(value: float | None) -> str:
        return "nan" if value is None else f"{value:.3f}"

    chosen = chosen_tenant_migration(results)
    return (
        f"clone_median_s={fmt(median(results.clone) if results.clone else None)} "
        f"clone_p95_s={fmt(p95(results.clone) if results.clone else None)} "
        f"migrate_median_s={fmt(median(results.migrate) if results.migrate else None)} "
        f"migrate_50_tenants_s={fmt(chosen.seconds if chosen else None)}"
    )


# --- Entry point -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clones",
        type=int,
        default=20,
        help="workspaces created by cloning the template (default 20)",
    )
    parser.add_argument(
        "--migrations",
        type=int,
        default=5,
        help="workspaces created by running every migration (default 5)",
    )
    parser.add_argument(
        "--tenants",
        type=int,
        default=50,
        help="workspaces to migrate in (c); topped up by cloning (default 50)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, cProfile one more migration on a single schema",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.clones < 1 or args.migrations < 1 or args.tenants < 1:
        raise SystemExit("--clones, --migrations and --tenants must be at least 1")
    started = time.perf_counter()
    database = f"bench_provisioning_{os.getpid()}"
    results = Results()
    failed = False

    from config.embedded import embedded_services

    with contextlib.ExitStack() as stack:
        # Starts PostgreSQL / Valkey only when DATABASE_URL / REDIS_URL are unset.
        os.environ.update(stack.enter_context(embedded_services(root=ROOT / ".local" / "bench")))
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        probe = ProbeMigrations(scratch)

        create_database(database)
        stack.callback(drop_database, database)
        say(f"• created database {database}")

        os.environ["BENCH_DATABASE_NAME"] = database
        os.environ["BENCH_PROBE_MIGRATIONS"] = probe.package
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
        import django

        django.setup()
        try:
            measure_provisioning(args, results)
            measure_tenant_migration(probe, results)
            if args.profile:
                profile_one_schema(probe, results)
        except BaseException:
            failed = True
            traceback.print_exc(file=sys.stderr)
        if not failed:
            report(args, results, database)
    say(f"• total runtime {time.perf_counter() - started:.1f} s")
    if failed:
        return 1
    print(summary_line(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
