"""The run engine. A run is a state machine kept in PostgreSQL; Celery only carries "look at step
run N now" messages, which may arrive late, twice, or again after a worker died.

One step, `step_execute(step_id)` (the `workflows.execute_step` task):

1. **claim** — take a session advisory lock on the step (held by whoever executes it, released
   by PostgreSQL when that worker's connection dies) and read the step, its run and version in
   one statement; return at once if the step finished or the run ended; then one conditional
   UPDATE marks it running (a queued step starts attempt + 1; a running step whose executor
   died continues the *same* attempt, so its recorded calls replay) with `lease_until = now +
   timeout`, only if it still has the status and attempt read (else read again), and returns
   the outputs the node reads;
2. **run the node** outside any transaction, inside `agents.replay.recording(...)` and a
   deadline (nodes.py);
3. **complete** — one transaction that locks the run row (every write to a run's steps happens
   under that lock, except the claim, which the advisory lock covers), re-checks the step is
   still running the same attempt (idempotent completion), stores the outcome, schedules
   successors (branches, skip propagation, joins, map items), aggregates the run's tokens and
   cost, finishes the run when nothing is left, and after commit enqueues what became ready and
   tells live pages (`workflows.live.events.run_changed`). Its writes go out as one statement
   (RunTxn.flush), which also releases the advisory lock once the step's row is written: a
   second delivery then waits on that row until the commit and finds the step finished.

The per-step statements are hand-written SQL (see "hand-written SQL" below for why).
Lock order is always run row, then step rows; the claim locks only its step row and never waits
for the run row while holding it.
"""

from __future__ import annotations

import contextvars
import copy
import hashlib
import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.db import (
    DEFAULT_DB_ALIAS,
    InterfaceError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from django.db.models import F, Field, Model, Q, Sum
from django.db.models.base import ModelState
from django.utils import timezone

from agents import replay
from agents.providers.base import Usage
from core import recovery
from core.exceptions import Conflict, ValidationFailed
from core.hooks import RunFinished, run_finished
from tenants.schemas import current_schema
from workflows import nodes
from workflows.definition import Definition, Edge, json_type
from workflows.expressions import ExpressionError, references, render, template_references
from workflows.live import events
from workflows.models import (
    RUN_FINISHED,
    STEP_FINISHED,
    RecordedCall,
    RunStatus,
    StepRun,
    StepStatus,
    Workflow,
    WorkflowRun,
    WorkflowVersion,
)
from workflows.recorder import StepRecorder

logger = logging.getLogger(__name__)

LEASE_GRACE_SECONDS = 30  # a running step's lease: its timeout plus this
BUSY_WAIT_SECONDS = 5.0  # how long a second delivery waits for a dead executor's lock to go
DEFAULT_MAP_CONCURRENCY = 4
MAX_SUBWORKFLOW_DEPTH = 5
# A queued step not started this long after it was due is re-sent (its message was lost: sent
# while the broker was down, or prefetched by a worker that died). Duplicates are harmless.
STALLED_AFTER = timedelta(seconds=15)
RESEND_EVERY = 30  # seconds: the same step is re-sent at most this often
RECOVER_BATCH = 500

ACTIVE = (StepStatus.QUEUED, StepStatus.RUNNING, StepStatus.WAITING)
HUMAN_WAITS = ("approval", "webhook_wait")
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


# --- inputs ------------------------------------------------------------------------------------


def _coerce(kind: str, value: Any) -> tuple[bool, Any]:
    actual = json_type(value)
    if kind == actual:
        return True, value
    if kind == "number" and actual == "integer":
        return True, value
    if kind == "integer" and actual == "number" and float(value).is_integer():
        return True, int(value)
    return False, value


def inputs_check(definition: Mapping[str, Any], inputs: Any) -> dict[str, Any]:
    """A run's inputs checked against `definition["inputs"]`, with defaults applied. Undeclared
    names pass through (a webhook body may carry more than the workflow reads).

    ValidationFailed(fields={"inputs": ["<name>: <problem>", ...]}) names every bad input."""
    if inputs is None:
        inputs = {}
    if not isinstance(inputs, dict):
        raise ValidationFailed(
            "The run's inputs must be a JSON object.",
            fields={"inputs": ["Send an object of input name → value."]},
        )
    declared: Mapping[str, Any] = definition.get("inputs") or {}
    checked = dict(inputs)
    problems: list[str] = []
    for name, spec in declared.items():
        kind = spec.get("type", "string")
        if inputs.get(name) is None:
            if "default" in spec:
                checked[name] = copy.deepcopy(spec["default"])
            elif spec.get("required"):
                problems.append(f"{name}: required (a {kind})")
            continue
        ok, value = _coerce(kind, inputs[name])
        if not ok:
            problems.append(f"{name}: must be a {kind}, not a {json_type(inputs[name])}")
        checked[name] = value
    if problems:
        raise ValidationFailed(
            "The run's inputs are not valid: " + "; ".join(problems) + ".",
            fields={"inputs": problems},
        )
    return checked


# --- plans: a version's definition, parsed once per process --------------------------------


@dataclass(frozen=True)
class Plan:
    version_id: int
    number: int
    workflow_id: int
    definition: Definition
    order: tuple[str, ...]  # topological, ties in definition order
    incoming: dict[str, tuple[Edge, ...]]
    reads: dict[str, frozenset[str]]  # node id → the step ids its config reads ("*": any)
    output_reads: frozenset[str]
    has_rejected_edge: frozenset[str]  # approval nodes with a "rejected" edge

    def spec(self, node_id: str, *, item: bool) -> nodes.NodeSpec:
        step = self.definition.step(node_id)
        if item:
            body = step.config.get("node") or {}
            return nodes.NodeSpec(node_id, body.get("type", ""), body.get("config") or {})
        return nodes.NodeSpec(node_id, step.type, step.config)


def _reads(config: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()
    for key, value in config.items():
        if key in ("expression", "items") and isinstance(value, str):
            found |= references(value)
        elif key == "node" and isinstance(value, dict):
            found |= _reads(value.get("config") or {})
        elif key != "output_schema":
            found |= template_references(value)
    return found


def _topological(definition: Definition) -> tuple[str, ...]:
    position = {s.id: i for i, s in enumerate(definition.steps)}
    indegree = {s.id: 0 for s in definition.steps}
    for edge in definition.edges:
        indegree[edge.target] += 1
    ready = sorted((i for i, d in indegree.items() if d == 0), key=position.__getitem__)
    order: list[str] = []
    while ready:
        current = ready.pop(0)
        order.append(current)
        for edge in definition.successors(current):
            indegree[edge.target] -= 1
            if indegree[edge.target] == 0:
                ready.append(edge.target)
                ready.sort(key=position.__getitem__)
    order += [s.id for s in definition.steps if s.id not in order]  # validators forbid cycles
    return tuple(order)


def build_plan(version_id: int, number: int, workflow_id: int, document: Any) -> Plan:
    definition = Definition.parse(document)
    reads: dict[str, frozenset[str]] = {}
    for step in definition.steps:
        try:
            reads[step.id] = frozenset(_reads(step.config))
        except ExpressionError:
            reads[step.id] = frozenset({"*"})
    try:
        output_reads = frozenset(template_references(definition.output or {}))
    except ExpressionError:
        output_reads = frozenset({"*"})
    return Plan(
        version_id=version_id,
        number=number,
        workflow_id=workflow_id,
        definition=definition,
        order=_topological(definition),
        incoming={s.id: tuple(definition.predecessors(s.id)) for s in definition.steps},
        reads=reads,
        output_reads=output_reads,
        has_rejected_edge=frozenset(e.source for e in definition.edges if e.branch == "rejected"),
    )


_plans: dict[tuple[str, int, Any], Plan] = {}


def plan_for(version: WorkflowVersion) -> Plan:
    """The parsed plan of a version. Versions are immutable, so it is cached per process, keyed
    by schema, id and creation time (ids start again in a workspace re-created under the same
    schema name). `version` may have its definition deferred: it is read only on a miss."""
    deferred = "definition" in version.get_deferred_fields()
    return _plan(
        version.pk,
        version.created_at,
        version.number,
        version.workflow_id,
        document=None if deferred else version.definition,
    )


def _plan(
    version_id: int, created_at: Any, number: int, workflow_id: int, *, document: Any = None
) -> Plan:
    key = (current_schema(), version_id, created_at)
    plan = _plans.get(key)
    if plan is None:
        if document is None:
            document = (
                WorkflowVersion.objects.filter(pk=version_id)
                .values_list("definition", flat=True)
                .get()
            )
        plan = build_plan(version_id, number, workflow_id, document)
        if len(_plans) > 500:
            _plans.clear()
        _plans[key] = plan
    return plan


# --- enqueueing and events -------------------------------------------------------------------


_executing_inline: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "engine_executing_inline", default=False
)


@contextmanager
def executing_inline() -> Iterator[None]:
    """Inside: the caller executes the steps itself (the demo seed, before any worker runs),
    so no `execute_step` message is sent. Otherwise each would reach the worker later, find
    its step finished and log it as "ignored". A step left queued is re-sent by recovery."""
    token = _executing_inline.set(True)
    try:
        yield
    finally:
        _executing_inline.reset(token)


def _send(step_id: int, countdown: float = 0.0) -> None:
    _send_many([(step_id, countdown)])


def _send_many(messages: Iterable[tuple[int, float]]) -> None:
    """One `execute_step` message per (step run id, countdown), through one broker producer."""
    from workflows.tasks import execute_step

    messages = list(messages)
    if not messages or _executing_inline.get():
        return
    recovery.mark_active(current_schema())
    with execute_step.app.producer_or_acquire() as producer:
        for step_id, countdown in messages:
            if countdown > 0:
                execute_step.apply_async((step_id,), countdown=countdown, producer=producer)
            else:
                execute_step.apply_async((step_id,), producer=producer)


def _after_commit(function: Callable[[], None]) -> None:
    """Side effects after commit; a broker or Redis failure is logged, never raised (the
    state is committed, and recovery re-sends what was not sent). The work runs in the
    context it was registered in (`executing_inline`, the request id), whenever the commit.
    Failures are caught here rather than with `robust=True`, whose log line reads the
    function's `__qualname__`, which a `partial` lacks: that AttributeError failed the task."""
    context = contextvars.copy_context()

    def side_effects() -> None:
        try:
            context.run(function)
        except Exception:
            logger.exception("a side effect after commit failed; recovery re-sends the work")

    transaction.on_commit(side_effects)


# --- hand-written SQL for the per-step path -----------------------------------------------------
#
# A step is ~7 statements. Through the ORM each cost 0.5–1 ms of Python on a 2-core machine
# (compiling the query; StepRun's default ordering also joins the run table), several times the
# database's own time, so the statements executed for every step are written out here. Table
# and column names come from the models (never from input: hence the S608 waivers); values are
# parameters, adapted and converted by the fields themselves.


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


# --- creating runs -----------------------------------------------------------------------------


def run_create(
    *,
    version: WorkflowVersion,
    inputs: dict[str, Any],
    trigger: str,
    created_by_id: int | None = None,
    api_key_prefix: str = "",
    callback_url: str = "",
    trigger_ref_id: int | None = None,
    parent_step_id: int | None = None,
    rerun_of_id: int | None = None,
) -> tuple[WorkflowRun, list[int]]:
    """Write the run and a step run per node (entry steps queued, the rest pending). Must be
    called inside a transaction; returns the run and the step ids to enqueue after commit."""
    plan = plan_for(version)
    now = timezone.now()
    run = WorkflowRun.objects.create(
        workflow_id=version.workflow_id,
        version=version,
        status=RunStatus.QUEUED,
        trigger=trigger,
        trigger_ref_id=trigger_ref_id,
        inputs=inputs,
        parent_step_id=parent_step_id,
        rerun_of_id=rerun_of_id,
        created_by_id=created_by_id,
        api_key_prefix=api_key_prefix,
        callback_url=callback_url,
    )
    entry = set(plan.definition.entry_ids)
    steps = StepRun.objects.bulk_create(
        StepRun(
            run=run,
            node_id=step.id,
            node_type=step.type,
            status=StepStatus.QUEUED if step.id in entry else StepStatus.PENDING,
            queued_at=now if step.id in entry else None,
        )
        for step in plan.definition.steps
    )
    return run, [s.pk for s in steps if s.status == StepStatus.QUEUED]


def run_start_internal(**kwargs: Any) -> WorkflowRun:
    """`run_create` plus the enqueue and the event after commit."""
    with transaction.atomic():
        run, ready = run_create(**kwargs)
        run_id = run.pk

        def after() -> None:
            _send_many((step_id, 0.0) for step_id in ready)
            events.run_changed(run_id, ready)

        _after_commit(after)
    return run


# --- the per-transaction view of one run ----------------------------------------------------


@dataclass
class Spend:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)

    @classmethod
    def of(cls, usage: Usage, cost: Decimal) -> Spend:
        return cls(usage.tokens_in, usage.output_tokens, cost)

    def minus(self, other: Spend) -> Spend:
        return Spend(
            max(0, self.input_tokens - other.input_tokens),
            max(0, self.output_tokens - other.output_tokens),
            max(Decimal(0), self.cost_usd - other.cost_usd),
        )


class RunTxn:
    """The changes to one run inside one transaction that holds the run's row lock.

    Collects changed step ids, steps to enqueue and run fields; `commit()` saves the run and
    registers the after-commit work (enqueue, child/parent notifications, the live event)."""

    def __init__(self, run: WorkflowRun, plan: Plan) -> None:
        self.run = run
        self.plan = plan
        self.now = timezone.now()
        self.changed: set[int] = set()
        self.enqueue: list[tuple[int, float]] = []
        self.run_fields: set[str] = set()
        self.after: list[Callable[[], None]] = []
        self._steps: dict[str, StepRun] | None = None
        self._writes: list[tuple[type[Model], list[int], dict[str, Any]]] = []
        # (step run id, advisory key): the executor's lock, released by the statement that
        # writes that step (see flush); `unlocked` then says it was.
        self.unlock: tuple[int, int] | None = None
        self.unlocked = False

    @classmethod
    def lock(cls, run_id: int) -> RunTxn | None:
        """Lock the run's row (inside a transaction); None when the run does not exist."""
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_RUN_SQL, [run_id])
            row = cursor.fetchone()
        if row is None:
            return None
        (run,) = _instances(WorkflowRun, _RUN, [row])
        created_at, number = row[len(_RUN) :]
        return cls(run, _plan(run.version_id, created_at, number, run.workflow_id))

    @property
    def finished(self) -> bool:
        return self.run.status in RUN_FINISHED

    # -- reading ------------------------------------------------------------------------------

    def steps(self) -> dict[str, StepRun]:
        """The run's top-level step runs by node id (state columns only)."""
        if self._steps is None:
            self.flush()
            rows = _state_rows("s.run_id = %s AND s.parent_id IS NULL", [self.run.pk])
            self._steps = {s.node_id: s for s in rows}
        return self._steps

    def outputs(self, ids: frozenset[str] | set[str]) -> dict[str, Any]:
        self.flush()
        return step_outputs(self.run.pk, ids)

    # -- writing ------------------------------------------------------------------------------

    def save_step(self, step: StepRun, **fields: Any) -> None:
        self.set_steps([step], **fields)

    def set_steps(self, steps: list[StepRun], **fields: Any) -> None:
        if not steps:
            return
        for step in steps:
            for name, value in fields.items():
                setattr(step, name, value)
        ids = [s.pk for s in steps]
        self._write(StepRun, ids, fields)
        self.changed.update(ids)

    def _write(self, model: type[Model], ids: list[int], fields: dict[str, Any]) -> None:
        """Writes wait for `flush()`: before the transaction reads rows again, and at commit.
        A row written twice is flushed in between (one statement cannot update it twice)."""
        if any(m is model and not set(ids).isdisjoint(i) for m, i, _ in self._writes):
            self.flush()
        self._writes.append((model, ids, fields))

    def flush(self) -> None:
        """Send the pending writes as one statement. If one of them writes the executor's step
        (`self.unlock`), the statement also releases the executor's advisory lock, after that
        row is written: a second delivery then waits on the row until this commits (and finds
        the step finished) instead of taking over a step that is still running."""
        writes, self._writes = self._writes, []
        if not writes:
            return
        parts, params = [], []
        unlock_from = None
        for n, (model, ids, fields) in enumerate(writes):
            sql, values = _update_sql(model, ids, fields)
            parts.append(f"w{n} AS ({sql} RETURNING id)")
            params += values
            if self.unlock and not self.unlocked and model is StepRun and self.unlock[0] in ids:
                unlock_from = n
        with connection.cursor() as cursor:
            if unlock_from is None and len(writes) == 1:
                sql, params = _update_sql(*writes[0])
                cursor.execute(sql, params)
                return
            main = "SELECT 1"
            if unlock_from is not None and self.unlock is not None:
                main = f"SELECT pg_advisory_unlock(%s) FROM w{unlock_from} WHERE id = %s"  # noqa: S608
                params += [self.unlock[1], self.unlock[0]]
            cursor.execute(f"WITH {', '.join(parts)} {main}", params)
            if unlock_from is not None:
                row = cursor.fetchone()
                self.unlocked = bool(row and row[0])

    def queue(self, steps: list[StepRun]) -> None:
        self.set_steps(steps, status=StepStatus.QUEUED, queued_at=self.now, next_attempt_at=None)
        self.enqueue.extend((s.pk, 0.0) for s in steps)

    def set_run(self, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self.run, name, value)
        self.run_fields.update(fields)

    def add_spend(self, spend: Spend) -> None:
        if spend.input_tokens or spend.output_tokens or spend.cost_usd:
            self.set_run(
                input_tokens=self.run.input_tokens + spend.input_tokens,
                output_tokens=self.run.output_tokens + spend.output_tokens,
                cost_usd=self.run.cost_usd + spend.cost_usd,
            )

    def commit(self) -> None:
        run = self.run
        if self.run_fields:
            run.revision += 1
            fields = {name: getattr(run, name) for name in sorted(self.run_fields)}
            self._write(WorkflowRun, [run.pk], fields)
            if self.finished and "status" in self.run_fields and run.callback_url:
                from workflows.notify import run_finished_webhook

                self.flush()
                run_finished_webhook(run)
            if self.finished and "status" in self.run_fields:
                self.after.append(partial(run_finished.fire, self.finished_event()))
        self.flush()
        if not (self.run_fields or self.changed or self.enqueue or self.after):
            return
        run_id, enqueue, after = run.pk, list(self.enqueue), list(self.after)
        changed = sorted(self.changed)
        parent_step = run.parent_step_id if self.finished and "status" in self.run_fields else None

        def publish() -> None:
            # (a parent's sub-workflow step reads this run's result when told)
            _send_many([*enqueue, *([(parent_step, 0.0)] if parent_step is not None else [])])
            for function in after:
                function()
            events.run_changed(run_id, changed)

        _after_commit(publish)

    def finished_event(self) -> RunFinished:
        run = self.run
        listing_version_id = (
            Workflow.objects.filter(pk=run.workflow_id)
            .values_list("listing_version_id", flat=True)
            .first()
        )
        finished = run.finished_at or self.now
        return RunFinished(
            kind="workflow",
            run_id=run.pk,
            schema_name=current_schema(),
            status=run.status,
            listing_version_id=listing_version_id,
            latency_ms=max(int((finished - run.created_at).total_seconds() * 1000), 0),
            cost_usd=run.cost_usd,
        )

    # -- step outcomes ----------------------------------------------------------------------

    def step_succeeded(self, step: StepRun, **fields: Any) -> None:
        self.save_step(
            step,
            status=StepStatus.SUCCEEDED,
            error="",
            finished_at=self.now,
            lease_until=None,
            next_attempt_at=None,
            **fields,
        )
        self.step_finished(step)

    def step_failed(self, step: StepRun, error: str, **fields: Any) -> None:
        self.save_step(
            step,
            status=StepStatus.FAILED,
            error=error,
            finished_at=self.now,
            lease_until=None,
            next_attempt_at=None,
            **fields,
        )
        self.step_finished(step)

    def step_finished(self, step: StepRun) -> None:
        if self.finished:
            return  # a map item that outlived its failed run: kept, nothing follows
        if step.parent_id is not None:
            self.map_progress(self.steps()[step.node_id])
            return
        self.schedule()
        self.settle()

    def attempt_failed(self, step: StepRun, error: str, **fields: Any) -> None:
        """Retry with backoff while attempts remain, else fail the step."""
        node = self.plan.definition.step(step.node_id)
        if step.attempt < node.max_attempts:
            delay = node.backoff_seconds * 2 ** (step.attempt - 1)
            delay += random.uniform(0, min(1.0, delay * 0.1))  # noqa: S311 (jitter)
            self.save_step(
                step,
                status=StepStatus.QUEUED,
                error=error,
                queued_at=self.now,
                next_attempt_at=self.now + timedelta(seconds=delay),
                lease_until=None,
                **fields,
            )
            self.enqueue.append((step.pk, delay))
            return
        self.step_failed(step, error, **fields)

    # -- scheduling ---------------------------------------------------------------------------

    def _verdict(self, node_id: str, steps: dict[str, StepRun]) -> tuple[str, list[str]]:
        """ "ready" (with the predecessors it joins), "skip" or "wait" for a pending step."""
        edges = self.plan.incoming[node_id]
        if not edges:
            return "ready", []
        live: list[str] = []
        dead = unresolved = 0
        for edge in edges:
            source = steps[edge.source]
            if source.status == StepStatus.SUCCEEDED:
                if edge.branch and source.branch != edge.branch:
                    dead += 1
                elif edge.source not in live:
                    live.append(edge.source)
            elif source.status == StepStatus.SKIPPED:
                dead += 1
            else:
                unresolved += 1  # running, queued, waiting, pending, failed or cancelled
        node = self.plan.definition.step(node_id)
        mode = node.config.get("mode", "all") if node.type == "join" else "all"
        if not live and not unresolved:
            return "skip", []
        if mode == "first" and live:
            return "ready", live[:1]
        if mode == "n" and live:
            wanted = int(node.config.get("n") or 1)
            if len(live) >= wanted or not unresolved:
                return "ready", live[:wanted]
            return "wait", []
        if not unresolved:
            return "ready", live
        return "wait", []

    def schedule(self) -> None:
        """Queue every pending step whose predecessors allow it and skip those on branches not
        taken (transitively). After a failure nothing new is queued (skips still propagate)."""
        steps = self.steps()
        failed = any(s.status == StepStatus.FAILED for s in steps.values())
        ready: list[StepRun] = []
        joins: list[tuple[StepRun, list[str]]] = []
        skipped: list[StepRun] = []
        for node_id in self.plan.order:
            step = steps[node_id]
            if step.status != StepStatus.PENDING:
                continue
            verdict, joined = self._verdict(node_id, steps)
            if verdict == "skip":
                step.status = StepStatus.SKIPPED  # later nodes in this pass see it
                skipped.append(step)
            elif verdict == "ready" and not failed:
                step.status = StepStatus.QUEUED
                if step.node_type in ("join", "parallel"):
                    joins.append((step, joined))
                else:
                    ready.append(step)
        self.set_steps(skipped, status=StepStatus.SKIPPED, finished_at=self.now)
        self.queue(ready)
        for step, joined in joins:
            self.save_step(
                step,
                status=StepStatus.QUEUED,
                queued_at=self.now,
                input={"joined": joined},
            )
            self.enqueue.append((step.pk, 0.0))

    def settle(self) -> None:
        """The run's status from its top-level steps: finished when nothing is active."""
        steps = self.steps()
        failed = [s for s in steps.values() if s.status == StepStatus.FAILED]
        if failed:
            stop = [
                s for s in steps.values() if s.status in (StepStatus.QUEUED, StepStatus.WAITING)
            ]
            self.cancel_steps(stop)
        active = [s for s in steps.values() if s.status in ACTIVE]
        if not active:
            if failed:
                first = min(failed, key=lambda s: self.plan.order.index(s.node_id))
                label = self.plan.definition.step(first.node_id).label
                self.finish(RunStatus.FAILED, error=f"{label}: {first.error}")
                return
            leftover = [s for s in steps.values() if s.status == StepStatus.PENDING]
            self.set_steps(leftover, status=StepStatus.SKIPPED, finished_at=self.now)
            output, problem = self.run_output()
            if problem:
                self.finish(RunStatus.FAILED, error=problem)
            else:
                self.finish(RunStatus.SUCCEEDED, output=output)
            return
        human = all(s.status == StepStatus.WAITING and s.node_type in HUMAN_WAITS for s in active)
        status = RunStatus.WAITING if human else RunStatus.RUNNING
        if self.run.status != status:
            self.set_run(status=status)
        if self.run.started_at is None:
            self.set_run(started_at=self.now)

    def run_output(self) -> tuple[Any, str]:
        definition = self.plan.definition
        if definition.output:
            scope = {
                "input": self.run.inputs,
                "steps": self.outputs(self.plan.output_reads),
                "run": self.run_scope(),
            }
            try:
                return render(definition.output, scope), ""
            except ExpressionError as exc:
                return None, f"output: {exc}"
        steps = self.steps()
        sinks = {i for i in definition.sink_ids if steps[i].status == StepStatus.SUCCEEDED}
        return (self.outputs(sinks) if sinks else {}), ""

    def run_scope(self) -> dict[str, Any]:
        return {"id": self.run.pk, "workflow": self.run.workflow_id, "version": self.plan.number}

    def finish(self, status: str, *, error: str = "", output: Any = None) -> None:
        self.set_run(status=status, error=error, output=output, finished_at=self.now)
        if self.run.started_at is None:
            self.set_run(started_at=self.now)

    def cancel_steps(self, steps: list[StepRun]) -> None:
        """Stop queued and waiting steps (and the pending/queued items of their maps, and the
        runs of their sub-workflows). Running steps are left to finish."""
        if not steps:
            return
        ids = [s.pk for s in steps]
        self.set_steps(steps, status=StepStatus.CANCELLED, finished_at=self.now, lease_until=None)
        self.cancel_items(ids)
        self.cancel_children(ids)

    def cancel_items(self, parent_ids: list[int]) -> None:
        self.flush()
        items = StepRun.objects.filter(
            parent_id__in=parent_ids,
            status__in=(StepStatus.PENDING, StepStatus.QUEUED, StepStatus.WAITING),
        )
        item_ids = list(items.values_list("pk", flat=True))
        if item_ids:
            StepRun.objects.filter(pk__in=item_ids).update(
                status=StepStatus.CANCELLED,
                finished_at=self.now,
                lease_until=None,
                revision=F("revision") + 1,
            )
            self.changed.update(item_ids)
            self.cancel_children(item_ids)

    def cancel_children(self, step_ids: list[int]) -> None:
        self.flush()
        children = list(
            WorkflowRun.objects.filter(parent_step_id__in=step_ids)
            .exclude(status__in=RUN_FINISHED)
            .values_list("pk", flat=True)
        )
        for child in children:
            self.after.append(partial(_cancel_quietly, child, "The parent run stopped."))

    # -- waits ---------------------------------------------------------------------------------

    def start_wait(self, step: StepRun, outcome: nodes.Outcome, spend: Spend) -> None:
        self.flush()
        totals = {
            "input_tokens": spend.input_tokens,
            "output_tokens": spend.output_tokens,
            "cost_usd": spend.cost_usd,
        }
        if outcome.wait == nodes.WAIT_ITEMS:
            self.start_map(step, outcome.items or [], outcome.input)
            return
        if outcome.wait == nodes.WAIT_CHILD and outcome.child is not None:
            if self.depth() >= MAX_SUBWORKFLOW_DEPTH:
                self.attempt_failed(
                    step, f"Sub-workflows nest more than {MAX_SUBWORKFLOW_DEPTH} levels deep."
                )
                return
            version = WorkflowVersion.objects.get(pk=outcome.child.version_id)
            child, ready = run_create(
                version=version,
                inputs=outcome.child.inputs,
                trigger=WorkflowRun.TriggerKind.SUBWORKFLOW,
                created_by_id=self.run.created_by_id,
                parent_step_id=step.pk,
            )
            child_id = child.pk
            self.enqueue.extend((i, 0.0) for i in ready)
            self.after.append(lambda: events.run_changed(child_id, ready))
        lease = None
        if outcome.wait == nodes.WAIT_WEBHOOK and outcome.wait_seconds:
            lease = self.now + timedelta(seconds=outcome.wait_seconds)
        token = secrets.token_urlsafe(24) if outcome.wait in HUMAN_WAITS_OUTCOMES else ""
        self.save_step(
            step,
            status=StepStatus.WAITING,
            input=outcome.input,
            resume_token=token,
            lease_until=lease,
            decided_by_id=None,
            decision_comment="",
            **totals,
        )
        if step.parent_id is None:
            self.settle()

    def depth(self) -> int:
        self.flush()
        depth, parent = 0, self.run.parent_step_id
        while parent is not None and depth <= MAX_SUBWORKFLOW_DEPTH:
            depth += 1
            parent = (
                WorkflowRun.objects.filter(steps__pk=parent)
                .values_list("parent_step_id", flat=True)
                .first()
            )
        return depth

    def start_map(self, step: StepRun, values: list[Any], shown: Any) -> None:
        if not values:
            self.step_succeeded(step, output=[], input=shown)
            return
        self.flush()
        existing = {
            i.item_index: i for i in StepRun.objects.filter(parent_id=step.pk).only(*STATE_FIELDS)
        }
        body_type = str(
            (self.plan.definition.step(step.node_id).config.get("node") or {}).get("type")
        )
        created = StepRun.objects.bulk_create(
            StepRun(
                run_id=self.run.pk,
                node_id=step.node_id,
                node_type=body_type,
                parent_id=step.pk,
                item_index=index,
                input=value,
                status=StepStatus.PENDING,
            )
            for index, value in enumerate(values)
            if index not in existing
        )
        self.changed.update(i.pk for i in created)
        stale = [i.pk for index, i in existing.items() if index is None or index >= len(values)]
        if stale:
            StepRun.objects.filter(pk__in=stale).delete()
        # Resumed: items that succeeded are kept; the others run again.
        for index, item in existing.items():
            if index is not None and index < len(values) and item.status != StepStatus.SUCCEEDED:
                self.save_step(
                    item, status=StepStatus.PENDING, input=values[index], finished_at=None
                )
        self.save_step(step, status=StepStatus.WAITING, input=shown, lease_until=None)
        self.map_progress(step)

    def map_progress(self, map_step: StepRun) -> None:
        """After an item changed: fail the map on a failed item, finish it when every item
        succeeded, else start pending items up to the concurrency limit."""
        if map_step.status != StepStatus.WAITING:
            return
        self.flush()
        items = _state_rows("s.parent_id = %s ORDER BY s.item_index", [map_step.pk])
        failed = next((i for i in items if i.status == StepStatus.FAILED), None)
        if failed is not None:
            self.cancel_items([map_step.pk])
            self.step_failed(map_step, f"item {failed.item_index} failed: {failed.error}")
            return
        if all(i.status == StepStatus.SUCCEEDED for i in items):
            rows = StepRun.objects.filter(parent_id=map_step.pk).order_by("item_index")
            totals = rows.aggregate(
                i=Sum("input_tokens"), o=Sum("output_tokens"), c=Sum("cost_usd")
            )
            self.step_succeeded(
                map_step,
                output=list(rows.values_list("output", flat=True)),
                input_tokens=totals["i"] or 0,
                output_tokens=totals["o"] or 0,
                cost_usd=totals["c"] or Decimal(0),
            )
            return
        config = self.plan.definition.step(map_step.node_id).config
        limit = int(config.get("concurrency") or DEFAULT_MAP_CONCURRENCY)
        active = sum(1 for i in items if i.status in ACTIVE)
        pending = [i for i in items if i.status == StepStatus.PENDING]
        self.queue(pending[: max(0, limit - active)])


HUMAN_WAITS_OUTCOMES = (nodes.WAIT_APPROVAL, nodes.WAIT_WEBHOOK)


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


# --- executing one step ------------------------------------------------------------------------


def _advisory_key(step_id: int) -> int:
    digest = hashlib.blake2b(f"{current_schema()}:{step_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _wait_for_executor(key: int) -> bool:
    """The step's advisory lock is held: wait a little. If the holder died, PostgreSQL ends its
    session and frees the lock; if it is alive, it will finish the step (False)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, true)", [f"{int(BUSY_WAIT_SECONDS * 1000)}"]
            )
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
        return True
    except OperationalError:
        return False


def _unlock_executor(key: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
    except Exception:  # the connection went away, and the lock with it
        logger.debug("advisory unlock failed", exc_info=True)


@dataclass
class Claim:
    step_id: int
    run_id: int
    node_id: str
    parent_id: int | None
    item_index: int | None
    attempt: int
    fresh: bool  # a new attempt (not a redelivery of a running one)
    status: str  # the status before the claim
    input: Any
    run_inputs: dict[str, Any]
    plan: Plan
    outputs: dict[str, Any] | None = None  # the outputs the node reads, read with the claim


# The step, its run and version, as the claim needs them. Taking the executor's advisory lock in
# the same statement saves a round trip: the row may then be older than the lock (read before a
# previous executor committed and let go), which the claim's conditional UPDATE detects.
_STEP_TABLE = StepRun._meta.db_table
_CLAIM_READ_SQL = (
    "SELECT s.id, s.run_id, s.node_id, s.parent_id, s.item_index, s.status, s.attempt, "  # noqa: S608
    "s.input, "
    "r.status AS run_status, r.inputs AS run_inputs, r.version_id, v.created_at AS version_at, "
    "v.number AS version_number, v.workflow_id "
    f"FROM {_STEP_TABLE} s JOIN {WorkflowRun._meta.db_table} r ON r.id = s.run_id "
    f"JOIN {_VERSION_TABLE} v ON v.id = r.version_id WHERE s.id = %s"
)
_LOCK_AND_READ_SQL = (
    "SELECT l.locked, c.* FROM pg_try_advisory_lock(%s) AS l(locked) "  # noqa: S608
    f"LEFT JOIN ({_CLAIM_READ_SQL}) c ON true"
)
ClaimRow = tuple[Any, ...]


def _lock_and_read(key: int, step_id: int) -> tuple[bool, ClaimRow | None]:
    """Try to become the step's executor, and read it: (locked, row or None if no such step)."""
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_AND_READ_SQL, [key, step_id])
        locked, *row = cursor.fetchone()
    return bool(locked), (tuple(row) if row[0] is not None else None)


def _read(step_id: int) -> ClaimRow | None:
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_READ_SQL, [step_id])
        row = cursor.fetchone()
    return tuple(row) if row is not None else None


def _claimable(row: ClaimRow | None) -> bool:
    return row is not None and row[8] not in RUN_FINISHED and row[5] in ACTIVE


def _claim(row: ClaimRow | None) -> Claim | None:
    """Mark the step running (a queued step starts a new attempt), unless it finished or its run
    ended. Holding the advisory lock, only a transition (cancel, a retry's reset) can change the
    step meanwhile; the UPDATE is conditional on the status and attempt read, and a miss reads
    again."""
    now = timezone.now()
    for _ in range(3):
        if row is None or not _claimable(row):
            return None
        (
            step_id,
            run_id,
            node_id,
            parent_id,
            item_index,
            status,
            attempt,
            step_input,
            run_status,
            run_inputs,
            version_id,
            version_at,
            version_number,
            workflow_id,
        ) = row
        plan = _plan(version_id, version_at, version_number, workflow_id)
        claim = Claim(
            step_id=step_id,
            run_id=run_id,
            node_id=node_id,
            parent_id=parent_id,
            item_index=item_index,
            attempt=attempt,
            fresh=status == StepStatus.QUEUED,
            status=status,
            input=_json(step_input),
            run_inputs=_json(run_inputs),
            plan=plan,
        )
        if status == StepStatus.WAITING:
            return claim
        node = plan.definition.step(node_id)
        fields: dict[str, Any] = {
            "status": StepStatus.RUNNING,
            "lease_until": now + timedelta(seconds=node.timeout_seconds + LEASE_GRACE_SECONDS),
        }
        if claim.fresh:
            claim.attempt += 1
            fields.update(
                attempt=claim.attempt, started_at=now, finished_at=None, next_attempt_at=None
            )
        claim.outputs = _mark_running(claim, status, attempt, fields)
        if claim.outputs is None:
            row = _read(step_id)
            continue
        _after_commit(partial(events.run_changed, run_id, [step_id]))
        if run_status == RunStatus.QUEUED:  # the run's first step
            WorkflowRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
                status=RunStatus.RUNNING, started_at=now, revision=F("revision") + 1
            )
        return claim
    return None


def _mark_running(
    claim: Claim, status: str, attempt: int, fields: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Update the step if it still has `status` and `attempt`, returning the outputs its node
    reads (in the same statement); None if it changed."""
    assignments, params = _assignments(StepRun, fields)
    params += [claim.step_id, status, attempt]
    returning = "NULL"
    reads, _ = _reads_of(claim)
    if reads:
        condition, extra = _outputs_condition(claim.run_id, reads)
        returning = (
            f"(SELECT jsonb_object_agg(o.node_id, o.output) FROM {_STEP_TABLE} o "  # noqa: S608
            f"WHERE {condition})"
        )
        params += extra
    with connection.cursor() as cursor:
        sql = (
            f"UPDATE {_STEP_TABLE} SET {', '.join(assignments)}, revision = revision + 1 "  # noqa: S608
            f"WHERE id = %s AND status = %s AND attempt = %s RETURNING {returning}"
        )
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    return _json(row[0]) or {}


def _reads_of(claim: Claim) -> tuple[frozenset[str], list[str]]:
    """The step ids whose outputs the node reads, and those a join or parallel node joins."""
    node = claim.plan.definition.step(claim.node_id)
    reads = set(claim.plan.reads[claim.node_id])
    joined_ids: list[str] = []
    if claim.parent_id is None and node.type in ("join", "parallel"):
        joined_ids = list((claim.input or {}).get("joined") or [])
        reads |= set(joined_ids)
    return frozenset(reads), joined_ids


@dataclass
class Result:
    outcome: nodes.Outcome | None = None
    failure: nodes.StepFailed | None = None
    spend: Spend = field(default_factory=Spend)  # what this attempt newly spent


def _scope(claim: Claim) -> tuple[dict[str, Any], Any]:
    plan = claim.plan
    node = plan.definition.step(claim.node_id)
    reads, joined_ids = _reads_of(claim)
    outputs = claim.outputs if claim.outputs is not None else step_outputs(claim.run_id, reads)
    scope: dict[str, Any] = {
        "input": claim.run_inputs,
        "steps": outputs,
        "run": {"id": claim.run_id, "workflow": plan.workflow_id, "version": plan.number},
    }
    if claim.parent_id is not None:
        scope["item"] = claim.input
        scope["index"] = claim.item_index
    joined: Any = None
    if node.type == "join":
        joined = {i: outputs.get(i) for i in joined_ids}
    elif node.type == "parallel":
        joined = (
            outputs.get(joined_ids[0])
            if len(joined_ids) == 1
            else ({i: outputs.get(i) for i in joined_ids} if joined_ids else claim.run_inputs)
        )
    return scope, joined


def _run_node(claim: Claim) -> Result:
    plan = claim.plan
    timeout = plan.definition.step(claim.node_id).timeout_seconds
    spec = plan.spec(claim.node_id, item=claim.parent_id is not None)
    recorder = StepRecorder(step_id=claim.step_id, attempt=claim.attempt, fresh=claim.fresh)
    started = time.monotonic()
    result = Result()
    try:
        scope, joined = _scope(claim)
        with replay.recording(recorder), nodes.deadline(timeout):
            result.outcome = nodes.execute(spec, scope, joined)
        if time.monotonic() - started > timeout:  # where the deadline could not interrupt
            raise nodes.StepTimedOut(timeout)
    except nodes.StepTimedOut as exc:
        result.outcome = None
        result.failure = nodes.StepFailed(str(exc))
        idle = not connection.in_atomic_block and connection.connection is not None
        if idle and not connection.is_usable():  # interrupted mid-query
            connection.close()
    except nodes.StepFailed as exc:
        result.failure = exc
    except (OperationalError, InterfaceError):
        if connection.connection is None or not connection.is_usable():
            # The database went away (not this step's fault): the task retries, and the next
            # claim continues this attempt, replaying the calls it recorded.
            raise
        logger.exception("step run %s raised", claim.step_id)
        result.failure = nodes.StepFailed("Internal error (OperationalError); see the logs.")
    except Exception as exc:
        logger.exception("step run %s (%s) raised", claim.step_id, spec.type)
        result.failure = nodes.StepFailed(f"Internal error ({type(exc).__name__}); see the logs.")
    earlier = Spend.of(recorder.earlier_usage, recorder.earlier_cost)
    if result.outcome is not None:
        result.spend = Spend.of(result.outcome.usage, result.outcome.cost_usd).minus(earlier)
    elif result.failure is not None:
        result.spend = Spend.of(result.failure.usage, result.failure.cost_usd).minus(earlier)
    return result


def _complete(claim: Claim, result: Result, key: int) -> bool:
    """Store the outcome. True if the executor's advisory lock (`key`) went with the step's
    write (RunTxn.flush); otherwise the caller releases it."""
    with transaction.atomic():
        txn = RunTxn.lock(claim.run_id)
        if txn is None:
            return False
        txn.unlock = (claim.step_id, key)
        if claim.parent_id is None:
            step = txn.steps().get(claim.node_id)
        else:
            step = next(iter(_state_rows("s.id = %s", [claim.step_id])), None)
        if (
            step is None
            or step.pk != claim.step_id
            or step.status != StepStatus.RUNNING
            or step.attempt != claim.attempt
        ):
            return False  # completed already (a duplicate delivery), or cancelled and reset
        spend = result.spend
        txn.add_spend(spend)
        totals = {
            "input_tokens": spend.input_tokens,
            "output_tokens": spend.output_tokens,
            "cost_usd": spend.cost_usd,
        }
        if result.outcome is not None:
            # The step's own figures are its final attempt's (replayed calls included).
            own = Spend.of(result.outcome.usage, result.outcome.cost_usd)
            totals = {
                "input_tokens": own.input_tokens,
                "output_tokens": own.output_tokens,
                "cost_usd": own.cost_usd,
            }
        if txn.run.status == RunStatus.CANCELLED:
            # Cancelled while it ran: the result is discarded, its spend counted.
            txn.save_step(
                step, status=StepStatus.CANCELLED, finished_at=txn.now, lease_until=None, **totals
            )
        elif result.failure is not None:
            failure = result.failure
            if not failure.replayable:
                RecordedCall.objects.filter(step_id=step.pk, attempt=claim.attempt).delete()
            shown = {"input": failure.input} if failure.input is not None else {}
            txn.attempt_failed(step, failure.message, **shown, **totals)
        elif result.outcome is not None and result.outcome.wait:
            txn.start_wait(step, result.outcome, spend)
        elif result.outcome is not None:
            outcome = result.outcome
            fields: dict[str, Any] = {"output": outcome.output, "branch": outcome.branch}
            if outcome.input is not None:
                fields["input"] = outcome.input
            txn.step_succeeded(step, **fields, **totals)
        txn.commit()
    return txn.unlocked


def _resume_child(claim: Claim) -> None:
    """A waiting sub-workflow step (or map item): take the child run's result once it ended."""
    with transaction.atomic():
        txn = RunTxn.lock(claim.run_id)
        if txn is None or txn.finished:
            return
        step = StepRun.objects.only(*STATE_FIELDS).filter(pk=claim.step_id).first()
        if step is None or step.status != StepStatus.WAITING or step.node_type != "sub_workflow":
            return
        child = WorkflowRun.objects.filter(parent_step_id=step.pk).order_by("-pk").first()
        if child is None or child.status not in RUN_FINISHED:
            return
        spend = Spend(child.input_tokens, child.output_tokens, child.cost_usd)
        txn.add_spend(spend)
        totals = {
            "input_tokens": spend.input_tokens,
            "output_tokens": spend.output_tokens,
            "cost_usd": spend.cost_usd,
        }
        if child.status == RunStatus.SUCCEEDED:
            txn.step_succeeded(step, output=child.output, **totals)
        else:
            reason = child.error or child.get_status_display().lower()
            txn.attempt_failed(
                step, f"Sub-workflow run #{child.pk} {child.status}: {reason}", **totals
            )
        txn.commit()


def step_execute(step_id: int) -> str:
    """Execute (or resume, or ignore) one step run in the current workspace's schema. Returns
    what happened, for logs and tests: "done", "waiting", "ignored" or "busy"."""
    key = _advisory_key(step_id)
    locked, row = _lock_and_read(key, step_id)
    if not locked:
        if not _claimable(row):
            return "ignored"  # finished, or its run ended: nothing to wait for
        if not _wait_for_executor(key):
            return "busy"
        row = _read(step_id)
    unlocked = False
    try:
        claim = _claim(row)
        if claim is None:
            return "ignored"
        if claim.status == StepStatus.WAITING:
            _resume_child(claim)
            return "waiting"
        unlocked = _complete(claim, _run_node(claim), key)
        return "done"
    finally:
        if not unlocked:
            _unlock_executor(key)


# --- transitions started by people or by time -------------------------------------------------


def _cancel_quietly(run_id: int, reason: str) -> None:
    run_cancel_internal(run_id, reason)


def run_cancel_internal(run_id: int, reason: str) -> bool:
    """Cancel a run that has not ended: every pending, queued or waiting step is cancelled; a
    running step finishes but its result is discarded. False when it had ended already."""
    with transaction.atomic():
        txn = RunTxn.lock(run_id)
        if txn is None or txn.finished:
            return False
        stopped = list(
            StepRun.objects.filter(
                run_id=run_id,
                status__in=(StepStatus.PENDING, StepStatus.QUEUED, StepStatus.WAITING),
            ).values_list("pk", flat=True)
        )
        if stopped:
            StepRun.objects.filter(pk__in=stopped).update(
                status=StepStatus.CANCELLED,
                finished_at=txn.now,
                lease_until=None,
                revision=F("revision") + 1,
            )
            txn.changed.update(stopped)
            txn.cancel_children(stopped)
        txn.finish(RunStatus.CANCELLED, error=reason)
        txn.commit()
    return True


def step_decide(
    *, step_id: int, run_id: int, approved: bool, comment: str, by_id: int | None, by_label: str
) -> None:
    """Record a decision on a waiting approval step (the caller checked the permission)."""
    with transaction.atomic():
        txn = RunTxn.lock(run_id)
        step = StepRun.objects.only(*STATE_FIELDS).filter(pk=step_id).first()
        if (
            txn is None
            or txn.finished
            or step is None
            or step.node_type != "approval"
            or step.status != StepStatus.WAITING
        ):
            raise Conflict(  # the request is fine; the step's state does not allow it
                "This step is not waiting for a decision (it was decided, or the run ended).",
                fields={"step": ["Not waiting for a decision."]},
            )
        if step.parent_id is None:
            step = txn.steps()[step.node_id]
        output = {"approved": approved, "comment": comment, "decided_by": by_label}
        fields: dict[str, Any] = {
            "output": output,
            "branch": "approved" if approved else "rejected",
            "decided_by_id": by_id,
            "decision_comment": comment,
        }
        if not approved and step.node_id not in txn.plan.has_rejected_edge:
            reason = f"Rejected by {by_label}" + (f": {comment}" if comment else ".")
            txn.step_failed(step, reason, **fields)
        else:
            txn.step_succeeded(step, **fields)
        txn.commit()


def webhook_resume(*, token: str, payload: Any) -> StepRun | None:
    """Complete the waiting webhook step with this token; None when there is none."""
    found = (
        StepRun.objects.filter(
            resume_token=token, node_type="webhook_wait", status=StepStatus.WAITING
        )
        .values_list("pk", "run_id")
        .first()
        if token
        else None
    )
    if found is None:
        return None
    step_id, run_id = found
    with transaction.atomic():
        txn = RunTxn.lock(run_id)
        if txn is None or txn.finished:
            return None
        step = txn.steps().get(
            StepRun.objects.filter(pk=step_id).values_list("node_id", flat=True).get()
        )
        if step is None or step.pk != step_id or step.status != StepStatus.WAITING:
            return None
        txn.step_succeeded(step, output=payload)
        txn.commit()
    return StepRun.objects.get(pk=step_id)


def steps_retry(*, run_id: int, step_ids: Iterable[int] | None) -> int:
    """Give failed (and, after a failure, cancelled) top-level steps a new attempt and reopen
    the run. `step_ids` None: every failed step of the run (resume). Returns how many steps
    were retried; succeeded steps are never re-run."""
    with transaction.atomic():
        txn = RunTxn.lock(run_id)
        if txn is None:
            return 0
        if txn.run.status == RunStatus.CANCELLED:
            raise ValidationFailed(
                "A cancelled run cannot be resumed; re-run it instead.",
                fields={"run": ["Cancelled runs are final."]},
            )
        steps = txn.steps()
        wanted = set(step_ids) if step_ids is not None else None
        failed = [
            s
            for s in steps.values()
            if s.status == StepStatus.FAILED and (wanted is None or s.pk in wanted)
        ]
        if not failed:
            raise ValidationFailed(
                "There is no failed step to retry.", fields={"step": ["Nothing failed."]}
            )
        # Steps the failure stopped come back too; their predecessors decide when they run.
        stopped = [s for s in steps.values() if s.status == StepStatus.CANCELLED]
        txn.set_steps(
            [*failed, *stopped],
            status=StepStatus.PENDING,
            finished_at=None,
            error="",
            next_attempt_at=None,
        )
        if txn.finished:
            txn.set_run(status=RunStatus.RUNNING, finished_at=None, error="", output=None)
        txn.schedule()
        txn.settle()
        txn.commit()
        return len(failed)


def webhook_expire(step_id: int) -> bool:
    """Fail a webhook wait whose time ran out (the recovery task calls this)."""
    run_id = StepRun.objects.filter(pk=step_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return False
    with transaction.atomic():
        txn = RunTxn.lock(run_id)
        step = StepRun.objects.only(*STATE_FIELDS, "lease_until").filter(pk=step_id).first()
        if (
            txn is None
            or txn.finished
            or step is None
            or step.status != StepStatus.WAITING
            or step.lease_until is None
            or step.lease_until > txn.now
        ):
            return False
        if step.parent_id is None:
            step = txn.steps()[step.node_id]
        seconds = txn.plan.definition.step(step.node_id).config.get("timeout_seconds")
        txn.step_failed(step, f"No webhook arrived within {seconds} s.")
        txn.commit()
    return True


def stalled_recover(
    *,
    now: Any = None,
    stalled_after: timedelta = STALLED_AFTER,
    queue_backlog: int | None = None,
) -> int:
    """In the current workspace: re-send steps whose executor is gone (running, but nobody
    holds their advisory lock: the worker died or lost its database session; or running past
    their lease), queued steps whose message was lost (queued for longer than `stalled_after`,
    e.g. sent while the broker was down or prefetched by a worker that died), and sub-workflow
    steps whose child ended; fail webhook waits that timed out. Each step is re-sent at most
    once per RESEND_EVERY; queued steps are left alone while the broker's queue holds more
    than RECOVER_BATCH messages (`queue_backlog`: they are most likely still in it). A
    duplicate message is harmless: it finds the step claimed or finished. Returns how many
    steps it touched."""
    now = now or timezone.now()
    old = now - stalled_after
    live_runs = ~Q(run__status__in=RUN_FINISHED)
    running = dict(
        StepRun.objects.filter(live_runs, status=StepStatus.RUNNING).values_list(
            "pk", "lease_until"
        )[:RECOVER_BATCH]
    )
    schema = current_schema()
    orphaned = set(recovery.unheld({pk: _advisory_key(pk) for pk in running}))
    orphaned |= {pk for pk, lease in running.items() if lease is not None and lease < now}
    resend = set(orphaned)
    if running or StepRun.objects.filter(live_runs, status=StepStatus.QUEUED).exists():
        recovery.mark_active(schema)  # swept often while it has work (after Redis lost the list)
    if queue_backlog is None or queue_backlog <= RECOVER_BATCH:
        queued = StepRun.objects.filter(live_runs, status=StepStatus.QUEUED).filter(
            Q(next_attempt_at__isnull=True, queued_at__lt=old) | Q(next_attempt_at__lt=old)
        )
        resend |= set(queued.values_list("pk", flat=True)[:RECOVER_BATCH])
    children_ended = StepRun.objects.filter(
        live_runs,
        status=StepStatus.WAITING,
        node_type="sub_workflow",
        child_runs__status__in=RUN_FINISHED,
    )
    resend |= set(children_ended.values_list("pk", flat=True)[:RECOVER_BATCH])
    due = recovery.resend_due("step", schema, sorted(resend), every_seconds=RESEND_EVERY)
    if due:
        _send_many((step_id, 0.0) for step_id in due)
    expired = StepRun.objects.filter(
        live_runs, status=StepStatus.WAITING, node_type="webhook_wait", lease_until__lt=now
    ).values_list("pk", flat=True)[:RECOVER_BATCH]
    failed = sum(1 for step_id in list(expired) if webhook_expire(step_id))
    if due or failed:
        lost = sorted(set(due) & orphaned)
        logger.warning(
            "recovered %s stalled step(s) (%s whose worker was lost: %s) and expired %s "
            "webhook wait(s) in %s",
            len(due),
            len(lost),
            lost[:20],
            failed,
            schema,
        )
    return len(due) + failed


__all__ = [
    "STEP_FINISHED",
    "Plan",
    "inputs_check",
    "plan_for",
    "run_cancel_internal",
    "run_create",
    "run_start_internal",
    "stalled_recover",
    "step_decide",
    "step_execute",
    "steps_retry",
    "webhook_resume",
]
