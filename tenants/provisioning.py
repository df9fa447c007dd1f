"""Workspace schemas: the migrated template, and the clone every new workspace starts from.

Running every migration for each new schema costs seconds (tens of seconds with dj-stripe's
stock history); copying the structure of an already migrated template schema costs a few
dozen DDL statements. django-tenants' own clone loses type modifiers such as `vector(384)`,
so this one rebuilds each table with `LIKE` (which keeps exact column types) and then
recreates every constraint and index from the catalogue under its original name. All of it
runs in the caller's transaction: a failure leaves no half-made schema behind.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django_tenants.utils import get_public_schema_name, schema_context, schema_exists

from core.exceptions import ApplicationError
from tenants.models import Workspace

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ProvisioningError(ApplicationError):
    code = "provisioning_failed"
    status = 500


def _ident(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema) or schema.startswith("pg_"):
        raise ProvisioningError(f"'{schema}' is not a valid workspace schema name.")
    return schema


def template_workspace() -> Workspace:
    """The template workspace row and schema, migrated. Creates them on first use.

    The template is an ordinary tenant row (flagged `is_template`), so `migrate_schemas` keeps
    it current on every deploy together with the real workspaces.
    """
    template = Workspace.objects.filter(is_template=True).first()
    if template is None:
        template = Workspace(
            schema_name=settings.TENANT_TEMPLATE_SCHEMA,
            name="Workspace template",
            slug="template",
            is_template=True,
        )
        template.save(verbosity=0)
    if not schema_exists(template.schema_name):
        template.create_schema(check_if_exists=True, sync_schema=True, verbosity=0)
    return template


def _fetch(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def _unsupported_objects(source: str) -> list[str]:
    rows = _fetch(
        """
        SELECT 'view ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %s AND c.relkind IN ('v', 'm', 'p', 'f')
        UNION ALL
        SELECT 'function ' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = %s
        UNION ALL
        SELECT 'trigger ' || t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %s AND NOT t.tgisinternal
        UNION ALL
        SELECT 'type ' || t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = %s AND t.typtype IN ('e', 'd', 'r', 'm')
            OR (n.nspname = %s AND t.typtype = 'c' AND EXISTS (
                SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
        UNION ALL
        SELECT 'policy ' || p.polname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s
        UNION ALL
        SELECT 'rule ' || r.rulename FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %s AND c.relkind = 'r'
        UNION ALL
        SELECT 'statistics ' || s.stxname FROM pg_statistic_ext s
          JOIN pg_namespace n ON n.oid = s.stxnamespace WHERE n.nspname = %s
        UNION ALL
        SELECT 'sequence ' || c.relname
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %s AND c.relkind = 'S'
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'i')
        """,
        (source,) * 9,
    )
    return [row[0] for row in rows]


def clone_schema(source: str, target: str) -> None:
    """Create schema `target` with the exact structure and the rows of schema `source`."""
    source, target = _ident(source), _ident(target)
    # The catalogue qualifies names (which the rewrites below rely on) only for schemas that are
    # not on the search path: read it from the public schema whatever the caller's schema is.
    with schema_context(get_public_schema_name()):
        _clone(source, target)


@dataclass(frozen=True)
class _ClonePlan:
    """What the clone reads from the catalogue about the template: its structure."""

    tables: list[str]
    constraints: list[tuple[Any, ...]]
    standalone_indexes: list[tuple[Any, ...]]
    identity_columns: list[tuple[Any, ...]]
    columns_of: dict[str, str]
    table_comments: list[tuple[Any, ...]]


# The template's structure changes only through migrations, so its catalogue reads are kept
# per process, keyed by a digest of the migrations it has: at thousands of workspaces each read
# scans a large pg_class, and provisioning would slow down with every workspace made.
_plans: dict[tuple[str, str], _ClonePlan] = {}


def _migrations_digest(schema: str) -> str | None:
    """A digest of the schema's applied migrations; None for a schema Django does not manage."""
    if _fetch("SELECT to_regclass(%s)", (f'{schema}."django_migrations"',))[0][0] is None:
        return None
    rows = _fetch(
        f"SELECT md5(string_agg(app || '.' || name, ',' ORDER BY app, name)) "  # noqa: S608
        f'FROM {schema}."django_migrations"'
    )
    return str(rows[0][0])


def _clone_plan(source: str) -> _ClonePlan:
    digest = _migrations_digest(source)
    if digest is None:
        return _read_clone_plan(source)
    key = (source, digest)
    plan = _plans.get(key)
    if plan is None:
        plan = _read_clone_plan(source)
        _plans.clear()
        _plans[key] = plan
    return plan


def _read_clone_plan(source: str) -> _ClonePlan:
    unsupported = _unsupported_objects(source)
    if unsupported:
        raise ProvisioningError(
            "The template schema holds objects the clone does not copy: " + ", ".join(unsupported)
        )
    tables = [
        row[0]
        for row in _fetch(
            """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname""",
            (source,),
        )
    ]
    constraints = _fetch(
        """
        SELECT c.relname, con.conname, pg_get_constraintdef(con.oid)
          FROM pg_constraint con
          JOIN pg_class c ON c.oid = con.conrelid
          JOIN pg_namespace n ON n.oid = con.connamespace
         WHERE n.nspname = %s AND con.contype IN ('p', 'u', 'x', 'c', 'f')
         ORDER BY CASE con.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'x' THEN 2
                  WHEN 'c' THEN 3 ELSE 4 END, c.relname, con.conname
        """,
        (source,),
    )
    standalone_indexes = _fetch(
        """
        SELECT pg_get_indexdef(i.indexrelid)
          FROM pg_index i
          JOIN pg_class ic ON ic.oid = i.indexrelid
          JOIN pg_namespace n ON n.oid = ic.relnamespace
         WHERE n.nspname = %s
           AND NOT EXISTS (SELECT 1 FROM pg_constraint con
                            WHERE con.conindid = i.indexrelid AND con.conrelid = i.indrelid
                              AND con.contype IN ('p', 'u', 'x'))
         ORDER BY ic.relname
        """,
        (source,),
    )
    identity_columns = _fetch(
        """SELECT table_name, column_name FROM information_schema.columns
            WHERE table_schema = %s AND is_identity = 'YES'""",
        (source,),
    )
    insertable = _fetch(
        """SELECT c.relname, string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
              AND a.attgenerated = ''
            GROUP BY c.relname""",
        (source,),
    )
    columns_of = dict(insertable)
    table_comments = _fetch(
        """SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relkind = 'r'
              AND obj_description(c.oid, 'pg_class') IS NOT NULL""",
        (source,),
    )
    return _ClonePlan(
        tables=tables,
        constraints=constraints,
        standalone_indexes=standalone_indexes,
        identity_columns=identity_columns,
        columns_of=columns_of,
        table_comments=table_comments,
    )


def _clone(source: str, target: str) -> None:
    plan = _clone_plan(source)
    script = [f"CREATE SCHEMA {target}"]
    for table in plan.tables:
        script.append(
            f'CREATE TABLE {target}."{table}" (LIKE {source}."{table}" '
            "INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED INCLUDING STORAGE "
            "INCLUDING COMMENTS INCLUDING COMPRESSION)"
        )
        columns = plan.columns_of[table]
        # Identifiers come from the catalogue and _ident(); nothing here is user input.
        script.append(
            f'INSERT INTO {target}."{table}" ({columns}) OVERRIDING SYSTEM VALUE '  # noqa: S608
            f'SELECT {columns} FROM {source}."{table}"'
        )
    for table, column in plan.identity_columns:
        table_ref = f'{target}."{table}"'
        script.append(
            f"SELECT setval(pg_get_serial_sequence({_literal(table_ref)}, {_literal(column)}), "  # noqa: S608
            f'COALESCE((SELECT max("{column}") FROM {table_ref}), 1), '
            f"(SELECT count(*) > 0 FROM {table_ref}))"
        )
    for table, name, definition in plan.constraints:
        definition = definition.replace(f"REFERENCES {source}.", f"REFERENCES {target}.")
        script.append(f'ALTER TABLE {target}."{table}" ADD CONSTRAINT "{name}" {definition}')
    for (definition,) in plan.standalone_indexes:
        script.append(
            definition.replace(f" ON {source}.", f" ON {target}.").replace(
                f" ON ONLY {source}.", f" ON ONLY {target}."
            )
        )
    for table, comment in plan.table_comments:
        script.append(f'COMMENT ON TABLE {target}."{table}" IS {_literal(comment)}')
    # One round trip for the whole script (a few hundred statements): sent one by one, the
    # round trips were most of a clone's time.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(";\n".join(script))


def _literal(text: str) -> str:
    """A SQL string literal (standard_conforming_strings: only quotes need doubling)."""
    return "'" + text.replace("'", "''") + "'"


Fetch = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


def describe_schema(schema: str, fetch: Fetch | None = None) -> dict[str, Any]:
    """The structure of a schema with its own name taken out, so two schemas compare equal
    when their tables, column types, defaults, constraints and indexes are the same. `fetch`
    runs the catalogue queries (default: Django's connection, which must be on `public`)."""
    schema = _ident(schema)
    query = fetch or _fetch

    def normalise(text: str | None) -> str | None:
        return None if text is None else text.replace(f"{schema}.", "<schema>.")

    columns = query(
        """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = %s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY c.relname, a.attnum
        """,
        (schema,),
    )
    constraints = query(
        """SELECT c.relname, con.conname, con.contype, pg_get_constraintdef(con.oid)
             FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = con.connamespace
            WHERE n.nspname = %s AND con.contype <> 'n'
            ORDER BY c.relname, con.conname""",
        (schema,),
    )
    comments = query(
        """SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname""",
        (schema,),
    )
    indexes = query(
        """SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %s
            ORDER BY tablename, indexname""",
        (schema,),
    )
    return {
        "tables": sorted({row[0] for row in columns}),
        "columns": [
            (t, col, typ, nn, normalise(dflt), ident, gen)
            for t, col, typ, nn, dflt, ident, gen in columns
        ],
        "constraints": [(t, name, kind, normalise(defn)) for t, name, kind, defn in constraints],
        "indexes": [(t, name, normalise(defn)) for t, name, defn in indexes],
        "table_comments": comments,
    }
