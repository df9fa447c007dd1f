"""Hand-written SQL for the per-step path.

A step is ~7 statements. Through the ORM each cost 0.5–1 ms of Python on a 2-core machine
(compiling the query; StepRun's default ordering also joins the run table), several times the
database's own time, so the statements executed for every step are written out here. Table
and column names come from the models (never from input: hence the S608 waivers); values are
parameters, adapted and converted by the fields themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, Model
from django.db.models.base import ModelState

from workflows.models import StepRun, StepStatus, WorkflowRun, WorkflowVersion

ACTIVE = (StepStatus.QUEUED, StepStatus.RUNNING, StepStatus.WAITING)
# The columns the scheduler reads; loaded without outputs, which can be large.
STATE_FIELDS = (
    "id",
    "run_id",
    "node_id",
    "node_type",
    "parent_id",
    "item_index",
    "status",
    "attempt",
    "branch",
    "error",
)


def _columns(model: type[Model], attnames: Iterable[str] | None = None) -> list[Field[Any, Any]]:
    """The model's concrete fields (those in `attnames`), in the order `Model.from_db` wants."""
    wanted = None if attnames is None else set(attnames)
    return [f for f in model._meta.concrete_fields if wanted is None or f.attname in wanted]


def _quoted(f: Field[Any, Any]) -> str:
    return f'"{f.column}"'  # PostgreSQL's quoting (connection.ops.quote_name) for our names


def _select_list(fields: list[Field[Any, Any]], alias: str) -> str:
    return ", ".join(f"{alias}.{_quoted(f)}" for f in fields)


def _instances(
    model: type[Model], fields: list[Field[Any, Any]], rows: Iterable[Sequence[Any]]
) -> list[Any]:
    """Model instances from rows whose first len(fields) columns are `fields`, like the ORM's
    `.only(...)` (other fields load on access); JSON columns are decoded by their field. Built
    as `Model.from_db` would, minus `__init__`'s pass over every field and its init signals
    (nothing listens to them for these models): 12× faster, and a run's steps are read on every
    completion."""
    names = [f.attname for f in fields]
    convert = [(i, f) for i, f in enumerate(fields) if hasattr(f, "from_db_value")]
    db = connections[DEFAULT_DB_ALIAS]  # once: each use of the `connection` proxy is a lookup
    loaded = []
    for row in rows:
        values = list(row[: len(fields)])
        for i, f in convert:
            if values[i] is not None:
                values[i] = f.from_db_value(values[i], None, db)
        instance = model.__new__(model)
        instance.__dict__.update(zip(names, values, strict=True))
        state = ModelState()
        state.adding, state.db = False, db.alias
        instance._state = state
        loaded.append(instance)
    return loaded


def _json(value: Any) -> Any:
    """A jsonb column read through a plain cursor (Django loads jsonb as text)."""
    return json.loads(value) if isinstance(value, str) else value


_STATE = _columns(StepRun, STATE_FIELDS)
_STATE_SQL = f"SELECT {_select_list(_STATE, 's')} FROM {StepRun._meta.db_table} s WHERE "  # noqa: S608


def _state_rows(where: str, params: Sequence[Any]) -> list[StepRun]:
    """Step runs with the state columns only, like `.only(*STATE_FIELDS)`; `where` uses `s.`."""
    with connection.cursor() as cursor:
        cursor.execute(_STATE_SQL + where, params)
        return _instances(StepRun, _STATE, cursor.fetchall())


def _assignments(model: type[Model], fields: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    """SET clauses (`"column" = %s`) and their parameters, adapted as the ORM's update() would."""
    assignments, params = [], []
    db = connections[DEFAULT_DB_ALIAS]
    for name, value in fields.items():
        f = model._meta.get_field(name)
        if not isinstance(f, Field) or hasattr(value, "resolve_expression"):
            raise TypeError(f"{name}: a concrete field and a plain value, please")
        assignments.append(f"{_quoted(f)} = %s")
        params.append(f.get_db_prep_save(value, db))
    return assignments, params


def _update_sql(
    model: type[Model], ids: Sequence[int], fields: Mapping[str, Any]
) -> tuple[str, list[Any]]:
    """`model.objects.filter(pk__in=ids).update(**fields, revision=F("revision") + 1)`."""
    assignments, params = _assignments(model, fields)
    assignments.append("revision = revision + 1")
    table = model._meta.db_table
    sql = f"UPDATE {table} SET {', '.join(assignments)} WHERE id = ANY(%s)"  # noqa: S608
    return sql, [*params, list(ids)]


_RUN = _columns(WorkflowRun)
_VERSION_TABLE = WorkflowVersion._meta.db_table
_LOCK_RUN_SQL = (
    f"SELECT {_select_list(_RUN, 'r')}, v.created_at, v.number "  # noqa: S608
    f"FROM {WorkflowRun._meta.db_table} r JOIN {_VERSION_TABLE} v ON v.id = r.version_id "
    "WHERE r.id = %s FOR NO KEY UPDATE OF r"
)

_STEP_TABLE = StepRun._meta.db_table


def step_outputs(run_id: int, ids: frozenset[str] | set[str]) -> dict[str, Any]:
    """{node id: output} of the run's succeeded top-level steps among `ids` ("*": all)."""
    if not ids:
        return {}
    condition, params = _outputs_condition(run_id, ids)
    with connection.cursor() as cursor:
        sql = f"SELECT o.node_id, o.output FROM {_STEP_TABLE} o WHERE {condition}"  # noqa: S608
        cursor.execute(sql, params)
        return {node_id: _json(output) for node_id, output in cursor.fetchall()}


def _outputs_condition(run_id: int, ids: frozenset[str] | set[str]) -> tuple[str, list[Any]]:
    condition = "o.run_id = %s AND o.parent_id IS NULL AND o.status = %s"
    params: list[Any] = [run_id, StepStatus.SUCCEEDED.value]
    if "*" not in ids:
        condition += " AND o.node_id = ANY(%s)"
        params.append(sorted(ids))
    return condition, params
