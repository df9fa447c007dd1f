"""Workspace migrations that cost per change, not per schema.

`migrate_schemas` runs Django's migrate once per schema: it rebuilds the migration state each
time (about 0.6 s per schema here even with nothing to apply), so a deploy at 1,000 workspaces
takes minutes whatever it changes. This module decides and applies once:

1. The template schema is migrated first, the ordinary way (new workspaces are cloned from
   it, so they never wait for the rest). Its applied migrations are the target.
2. One query reads a digest of every workspace's `django_migrations` (in chunks of
   `STATE_CHUNK` schemas); schemas whose digest equals the template's are up to date. With
   nothing to apply this is the whole deploy.
3. For each group of schemas with the same applied set, the missing migrations are turned
   into SQL once (Django's own schema editor in collect-SQL mode, introspecting the group's
   first schema, which is in the pre-migration state), applied to that first schema, and its
   structure compared with the template's (`provisioning.describe_schema`). Only then is the
   same SQL applied to the others, in parallel, each schema in its own transaction together
   with its `django_migrations` rows. A failure stops the rollout: schemas already done stay
   done, the failing one is rolled back, and a re-run continues with whatever is still behind.
4. A plan that cannot be written as SQL (RunPython, non-atomic migrations, squashed
   replacements) or whose canary does not match the template falls back to Django's migrate,
   schema by schema (resumable the same way: Django records each migration as it goes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, router
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.migration import Migration
from django.db.migrations.operations.special import RunPython
from django_tenants.utils import schema_context
from psycopg import sql

from tenants import provisioning
from tenants.schemas import live_workspaces

STATE_CHUNK = 500  # schemas per digest query (one UNION ALL statement each)
DEADLOCK_RETRIES = 3  # attempts per schema when PostgreSQL breaks a deadlock by rolling it back
Key = tuple[str, str]


class MigrationFailed(Exception):
    def __init__(self, schema: str, error: str, done: int) -> None:
        super().__init__(f"Migrating workspace schema {schema} failed: {error}")
        self.schema, self.error, self.done = schema, error, done


@dataclass
class MigrateReport:
    schemas: int = 0
    up_to_date: int = 0
    migrated: int = 0
    applied: list[str] = field(default_factory=list)  # "app.name" of what was applied
    fallback: str = ""  # why Django's per-schema migrate was used, if it was
    seconds: float = 0.0


Progress = Callable[[int, int], None]  # (schemas done, schemas that were behind)
Tick = Callable[[], None]  # one more schema done


# --- reading the state of every schema at once ----------------------------------------------


def workspace_schemas() -> list[str]:
    """Every workspace schema, oldest first (the template excluded)."""
    return list(live_workspaces().order_by("pk").values_list("schema_name", flat=True))


def _conninfo() -> dict[str, Any]:
    db = settings.DATABASES[DEFAULT_DB_ALIAS]
    params = {
        "dbname": db["NAME"],
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
    }
    return {key: value for key, value in params.items() if value}


def digests(schemas: Sequence[str]) -> dict[str, str]:
    """schema -> a digest of its applied migrations, one query per `STATE_CHUNK` schemas."""
    found: dict[str, str] = {}
    with psycopg.connect(**_conninfo(), autocommit=True) as conn:
        for start in range(0, len(schemas), STATE_CHUNK):
            parts = [
                sql.SQL(
                    "SELECT {schema}, md5(string_agg(app || '.' || name, ',' ORDER BY app, name))"
                    " FROM {table}"
                ).format(
                    schema=sql.Literal(schema),
                    table=sql.Identifier(schema, "django_migrations"),
                )
                for schema in schemas[start : start + STATE_CHUNK]
            ]
            rows = conn.execute(sql.SQL(" UNION ALL ").join(parts)).fetchall()
            found.update({str(schema): str(digest) for schema, digest in rows})
    return found


def applied_in(schema: str) -> set[Key]:
    with psycopg.connect(**_conninfo(), autocommit=True) as conn:
        query = sql.SQL("SELECT app, name FROM {}").format(
            sql.Identifier(schema, "django_migrations")
        )
        return {(str(app), str(name)) for app, name in conn.execute(query).fetchall()}


# --- turning a plan into SQL once --------------------------------------------------------------


def _ordered(loader: MigrationLoader, keys: Iterable[Key]) -> list[Key]:
    wanted = set(keys)
    order: list[Key] = []
    seen: set[Key] = set()
    for leaf in sorted(loader.graph.leaf_nodes()):
        for key in loader.graph.forwards_plan(leaf):
            if key not in seen:
                seen.add(key)
                if key in wanted:
                    order.append(key)
    return order


def _not_sql(schema: str, migrations: Sequence[Migration]) -> str:
    """Why this plan cannot be applied to workspace schemas as collected SQL, or "". Python
    steps of apps that do not migrate in workspace schemas (the router skips them) are fine."""
    with schema_context(schema):
        for migration in migrations:
            label = f"{migration.app_label}.{migration.name}"
            if migration.replaces:
                return f"{label} replaces other migrations"
            if not migration.atomic:
                return f"{label} is not atomic"
            for operation in migration.operations:
                if isinstance(operation, RunPython) and router.allow_migrate(
                    DEFAULT_DB_ALIAS, migration.app_label, **operation.hints
                ):
                    return f"{label} runs Python (RunPython)"
    return ""


def plan_sql(schema: str, applied: set[Key], missing: Sequence[Key]) -> list[str]:
    """The SQL of `missing` for a schema that has `applied`, written by Django's schema editor
    in collect-SQL mode while connected to `schema` (what it introspects must be the schema
    before the change)."""
    with schema_context(schema):
        executor = MigrationExecutor(connection)
        loader = executor.loader
        state = loader.project_state(sorted(applied & set(loader.graph.nodes)), at_end=True)
        statements: list[str] = []
        for key in missing:
            migration = loader.graph.nodes[key]
            with connection.schema_editor(collect_sql=True, atomic=migration.atomic) as editor:
                state = migration.apply(state, editor, collect_sql=True)
            statements += editor.collected_sql
    return [s for s in statements if _executable(s)]


def _executable(statement: str) -> bool:
    lines = [line for line in statement.splitlines() if line.strip()]
    return any(not line.lstrip().startswith("--") for line in lines)


# --- applying -----------------------------------------------------------------------------------


def _apply(
    conn: psycopg.Connection[Any], schema: str, statements: Sequence[str], keys: Sequence[Key]
) -> None:
    """Inside the caller's transaction; leaves the search path on `public`."""
    conn.execute(sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(schema)))
    for statement in statements:
        conn.execute(statement.encode())  # collected SQL has its parameters inlined
    with conn.cursor() as cursor:
        cursor.executemany(
            sql.SQL("INSERT INTO {} (app, name, applied) VALUES (%s, %s, now())").format(
                sql.Identifier(schema, "django_migrations")
            ),
            list(keys),
        )
    conn.execute("SET LOCAL search_path TO public")


def apply_to_schema(
    conn: psycopg.Connection[Any], schema: str, statements: Sequence[str], keys: Sequence[Key]
) -> None:
    """The statements and their migration records in one transaction: all or nothing."""
    with conn.transaction():
        _apply(conn, schema, statements, keys)


class _CanaryDiffers(Exception):
    pass


def canary(schema: str, template: str, statements: Sequence[str], keys: Sequence[Key]) -> bool:
    """Apply to `schema` and keep it only if the result has the template's structure (the
    comparison runs inside the same transaction, so a mismatch leaves nothing behind)."""
    with psycopg.connect(**_conninfo(), autocommit=True) as conn:

        def fetch(query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
            return list(conn.execute(query, params).fetchall())

        try:
            with conn.transaction():
                _apply(conn, schema, statements, keys)
                if provisioning.describe_schema(schema, fetch) != provisioning.describe_schema(
                    template, fetch
                ):
                    raise _CanaryDiffers
        except _CanaryDiffers:
            return False
    return True


def apply_everywhere(
    schemas: Sequence[str],
    statements: Sequence[str],
    keys: Sequence[Key],
    *,
    workers: int,
    tick: Tick | None = None,
) -> int:
    """Apply to every schema, `workers` at a time, each in its own transaction. At the first
    failure no new schema is started, and MigrationFailed names the failing one (those done
    stay done; a re-run finds them up to date)."""
    local = threading.local()
    stop = threading.Event()
    lock = threading.Lock()
    opened: list[psycopg.Connection[Any]] = []
    done = 0

    def one(schema: str) -> None:
        nonlocal done
        if stop.is_set():
            return
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(**_conninfo(), autocommit=True)
            with lock:
                opened.append(local.conn)
        for attempt in range(1, DEADLOCK_RETRIES + 1):
            try:
                apply_to_schema(local.conn, schema, statements, keys)
                break
            except psycopg.Error as exc:
                # Schemas migrated at once can lock the same public tables (a foreign key into
                # public, say); when PostgreSQL breaks a deadlock by rolling one back, retry it.
                if isinstance(exc, psycopg.errors.DeadlockDetected) and attempt < DEADLOCK_RETRIES:
                    time.sleep(0.05 * attempt)
                    continue
                stop.set()
                raise MigrationFailed(schema, str(exc).strip(), done) from exc
        with lock:
            done += 1
            if tick is not None:
                tick()

    failure: BaseException | None = None
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for future in as_completed([pool.submit(one, schema) for schema in schemas]):
                if failure is None and future.exception() is not None:
                    failure = future.exception()
    finally:
        for conn in opened:
            conn.close()
    if failure is not None:
        raise failure
    return done


# --- the whole deploy ---------------------------------------------------------------------------


def _migrate_template() -> str:
    from django.core.management import call_command

    template = provisioning.template_workspace()
    call_command(
        "migrate_schemas",
        tenant=True,
        schema_name=template.schema_name,
        interactive=False,
        verbosity=0,
    )
    schema_name: str = template.schema_name
    return schema_name


def _django_migrate(schemas: Sequence[str], tick: Tick) -> int:
    from django.core.management import call_command

    for schema in schemas:
        call_command(
            "migrate_schemas", tenant=True, schema_name=schema, interactive=False, verbosity=0
        )
        tick()
    return len(schemas)


def migrate_workspaces(*, workers: int = 2, progress: Progress | None = None) -> MigrateReport:
    """Bring every workspace schema to the template's migrations (see the module docstring)."""
    started = time.perf_counter()
    template = _migrate_template()
    schemas = workspace_schemas()
    report = MigrateReport(schemas=len(schemas))
    target_digest = digests([template])[template]
    state = digests(schemas)
    behind = [s for s in schemas if state.get(s) != target_digest]
    report.up_to_date = len(schemas) - len(behind)
    if not behind:
        report.seconds = time.perf_counter() - started
        return report
    finished = 0

    def tick() -> None:
        nonlocal finished
        finished += 1
        if progress is not None:
            progress(finished, len(behind))

    target = applied_in(template)
    groups: dict[str, list[str]] = {}
    for schema in behind:
        groups.setdefault(state[schema], []).append(schema)
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    for members in groups.values():
        applied = applied_in(members[0])
        missing = _ordered(loader, target - applied)
        unknown = applied - set(loader.graph.nodes)
        migrations = [loader.graph.nodes[key] for key in missing]
        reason = (
            f"the schema has migrations this code does not know ({sorted(unknown)[0]})"
            if unknown
            else _not_sql(members[0], migrations)
        )
        report.applied += [
            label
            for label in (f"{app}.{name}" for app, name in missing)
            if label not in report.applied
        ]
        if not reason:
            statements = plan_sql(members[0], applied, missing)
            if not canary(members[0], template, statements, missing):
                reason = f"the collected SQL did not give {members[0]} the template's structure"
        if reason:
            report.fallback = reason
            report.migrated += _django_migrate(members, tick)
            continue
        report.migrated += 1
        tick()
        report.migrated += apply_everywhere(
            members[1:], statements, missing, workers=workers, tick=tick
        )
    report.seconds = time.perf_counter() - started
    return report
