"""Workspace migrations decided once for all schemas (tenants/migrating.py): nothing to apply
touches no schema; a new migration reaches every workspace with the template's exact
structure; a failure in the middle leaves the earlier schemas done and the failing one rolled
back, and a re-run continues; a plan with Python steps falls back to Django's migrate.

The new migrations go into a temporary copy of tests/probe/migrations (MIGRATION_MODULES), and
every schema is put back afterwards, so no tracked file and no later test is affected."""

from __future__ import annotations

import importlib
import shutil
import sys
import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django_tenants.utils import schema_context
from psycopg import sql

from tenants import provisioning, services
from tenants.migrating import MigrationFailed, _conninfo, migrate_workspaces, workspace_schemas
from tenants.models import Workspace
from tests.helpers.personas import World, make_workspace

PROBE_MIGRATIONS = Path(__file__).resolve().parents[1] / "probe" / "migrations"
ADD_FIELD = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("probe", "0001_initial")]
    operations = [
        migrations.AddField(
            model_name="document",
            name="note",
            field=models.CharField(max_length=40, null=True, blank=True, db_index=True),
        ),
    ]
"""
RUN_PYTHON = """from django.db import migrations


def fill(apps, schema_editor):
    apps.get_model("probe", "Document").objects.update(note="filled")


class Migration(migrations.Migration):
    dependencies = [("probe", "0002_note")]
    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
"""


class Probe:
    """A scratch copy of the probe app's migrations that a test can add migrations to."""

    def __init__(self, directory: Path) -> None:
        self.package = f"probe_migrations_{uuid.uuid4().hex[:8]}"
        self.path = directory / self.package
        shutil.copytree(PROBE_MIGRATIONS, self.path, ignore=shutil.ignore_patterns("__pycache__"))
        sys.path.insert(0, str(directory))

    def add(self, name: str, text: str) -> None:
        (self.path / f"{name}.py").write_text(text)
        importlib.invalidate_caches()


def _run(statement: sql.Composable, schema: str) -> None:
    with psycopg.connect(**_conninfo(), autocommit=True) as conn:
        conn.execute(statement.format(table=sql.Identifier(schema, "probe_document")))


def _has_note(schema: str) -> tuple[bool, bool]:
    """(the column exists, the migration is recorded) in `schema`."""
    with psycopg.connect(**_conninfo(), autocommit=True) as conn:
        column = conn.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'probe_document' AND column_name = 'note'",
            (schema,),
        ).fetchone()
        recorded = conn.execute(
            sql.SQL("SELECT 1 FROM {} WHERE app = 'probe' AND name = '0002_note'").format(
                sql.Identifier(schema, "django_migrations")
            )
        ).fetchone()
    return column is not None, recorded is not None


@pytest.fixture
def schemas(committed_world: World) -> Iterator[list[str]]:
    """Five workspaces (alpha, bravo and three more), oldest first."""
    for number in range(3):
        make_workspace(slug=f"mig-{number}", owner=committed_world.owner)
    names = workspace_schemas()
    yield names
    template = Workspace.objects.get(is_template=True).schema_name
    with psycopg.connect(**_conninfo(), autocommit=True) as conn:
        for schema in [*names, template]:
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS note").format(
                    sql.Identifier(schema, "probe_document")
                )
            )
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE app = 'probe' AND name <> '0001_initial'").format(
                    sql.Identifier(schema, "django_migrations")
                )
            )
        for slug in ("mig-0", "mig-1", "mig-2", "mig-new"):
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(services.workspace_schema_name(slug))
                )
            )


@pytest.fixture
def probe(settings, tmp_path: Path) -> Probe:
    probe = Probe(tmp_path)
    settings.MIGRATION_MODULES = {**settings.MIGRATION_MODULES, "probe": probe.package}
    return probe


def test_with_nothing_to_apply_no_workspace_schema_is_touched(schemas: list[str]) -> None:
    seen: list[tuple[int, int]] = []
    report = migrate_workspaces(progress=lambda done, total: seen.append((done, total)))
    assert (report.schemas, report.up_to_date, report.migrated) == (len(schemas), len(schemas), 0)
    assert seen == []
    assert report.applied == []
    out = StringIO()
    call_command("migrate_workspaces", stdout=out, stderr=StringIO())
    assert f"All {len(schemas)} workspace schemas are up to date" in out.getvalue()


def test_a_new_migration_reaches_every_workspace_with_the_templates_structure(
    committed_world: World, schemas: list[str], probe: Probe
) -> None:
    probe.add("0002_note", ADD_FIELD)
    seen: list[tuple[int, int]] = []

    report = migrate_workspaces(workers=2, progress=lambda done, total: seen.append((done, total)))

    assert report.fallback == ""  # the collected-SQL path, not Django's per-schema migrate
    assert (report.migrated, report.applied) == (len(schemas), ["probe.0002_note"])
    assert sorted(seen)[-1] == (len(schemas), len(schemas))
    template = Workspace.objects.get(is_template=True).schema_name
    with schema_context("public"):
        reference = provisioning.describe_schema(template)
        for schema in schemas:
            assert _has_note(schema) == (True, True), schema
            assert provisioning.describe_schema(schema) == reference, schema
    # …a second deploy has nothing left to do, and a new workspace is cloned with the change
    # (the clone's cached view of the template follows the template's migrations).
    assert migrate_workspaces().migrated == 0
    fresh = make_workspace(slug="mig-new", owner=committed_world.owner)
    assert _has_note(fresh.schema_name) == (True, True)


def test_a_failure_midway_keeps_what_was_done_and_a_rerun_continues(
    schemas: list[str], probe: Probe
) -> None:
    probe.add("0002_note", ADD_FIELD)
    # The third workspace already has a column of that name, so its ALTER TABLE fails.
    broken = schemas[2]
    _run(sql.SQL("ALTER TABLE {table} ADD COLUMN note integer"), broken)

    with pytest.raises(MigrationFailed) as failed:
        migrate_workspaces(workers=1)

    assert failed.value.schema == broken
    assert "note" in failed.value.error
    assert [_has_note(s)[1] for s in schemas] == [True, True, False, False, False]
    # Fix the cause; the re-run migrates only the three still behind.
    _run(sql.SQL("ALTER TABLE {table} DROP COLUMN note"), broken)
    report = migrate_workspaces(workers=1)
    assert (report.up_to_date, report.migrated) == (2, 3)
    assert all(_has_note(s) == (True, True) for s in schemas)


def test_the_command_names_the_failing_schema_and_how_to_continue(
    schemas: list[str], probe: Probe
) -> None:
    probe.add("0002_note", ADD_FIELD)
    _run(sql.SQL("ALTER TABLE {table} ADD COLUMN note integer"), schemas[1])
    with pytest.raises(CommandError) as failed:
        call_command("migrate_workspaces", "--workers", "1", stdout=StringIO(), stderr=StringIO())
    message = str(failed.value)
    assert schemas[1] in message
    assert "run migrate_workspaces again" in message
    with pytest.raises(CommandError, match="--workers: use at least 1"):
        call_command("migrate_workspaces", "--workers", "0", stdout=StringIO())


def test_a_plan_with_python_steps_falls_back_to_djangos_migrate(
    schemas: list[str], probe: Probe
) -> None:
    probe.add("0002_note", ADD_FIELD)
    probe.add("0003_fill", RUN_PYTHON)
    report = migrate_workspaces()
    assert "RunPython" in report.fallback
    assert report.migrated == len(schemas)
    assert all(_has_note(s) == (True, True) for s in schemas)


def test_workspace_tables_hold_no_foreign_keys_into_public(committed_world: World) -> None:
    # Each one would add triggers to a public table, once per workspace (decisions.md §38).
    with psycopg.connect(**_conninfo(), autocommit=True) as conn:
        rows = conn.execute(
            """SELECT cl.relname, ref.relname FROM pg_constraint con
                 JOIN pg_class cl ON cl.oid = con.conrelid
                 JOIN pg_class ref ON ref.oid = con.confrelid
                WHERE con.contype = 'f' AND cl.relname LIKE 'guardian%%'
                  AND cl.relnamespace = %s::regnamespace
                  AND ref.relnamespace <> cl.relnamespace""",
            (committed_world.workspace_a.schema_name,),
        ).fetchall()
    assert rows == []
