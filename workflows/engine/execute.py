"""Executing one step: claim it, run its node outside any transaction, complete it.

`step_execute(step_id)` is the body of the `workflows.execute_step` task; the package docstring
(workflows/engine/__init__.py) describes the claim, the run and the completion."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from agents.gateway import replay
from core import metrics, recovery, tracing
from tenants.schemas import current_schema
from workflows import events, nodes
from workflows.engine.dispatch import _after_commit
from workflows.engine.locked import Spend
from workflows.engine.plans import Plan, _plan
from workflows.engine.sql import (
    _STEP_TABLE,
    _VERSION_TABLE,
    ACTIVE,
    STATE_FIELDS,
    _assignments,
    _json,
    _outputs_condition,
    _state_rows,
    step_outputs,
)
from workflows.engine.txn import RunTxn
from workflows.models import (
    RUN_FINISHED,
    RecordedCall,
    RunStatus,
    StepRun,
    StepStatus,
    WorkflowRun,
)
from workflows.recorder import StepRecorder

logger = logging.getLogger(__name__)

LEASE_GRACE_SECONDS = 30  # a running step's lease: its timeout plus this
BUSY_WAIT_SECONDS = 5.0  # how long a second delivery waits for a dead executor's lock to go


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
    """Run the node, counted (core/metrics.py) and traced (core/tracing.py) by its type."""
    node_type = claim.plan.definition.step(claim.node_id).type
    attributes = {
        "agentmarket.workflow.node_type": node_type,
        "agentmarket.workflow.node_id": claim.node_id,
        "agentmarket.workflow.run_id": claim.run_id,
        "agentmarket.workflow.step_run_id": claim.step_id,
        "agentmarket.workflow.attempt": claim.attempt,
    }
    started = time.monotonic()
    with tracing.span(f"workflow.step {node_type}", attributes=attributes) as span:
        result = _run_node_body(claim)
        outcome = (
            "failed"
            if result.outcome is None
            else ("waiting" if result.outcome.wait else "succeeded")
        )
        if result.failure is not None:
            tracing.failed(span, result.failure.message)
        if span.is_recording():
            span.set_attribute("agentmarket.workflow.outcome", outcome)
    metrics.step_executed(node_type=node_type, outcome=outcome, seconds=time.monotonic() - started)
    return result


def _run_node_body(claim: Claim) -> Result:
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
            recovery.advisory_unlock(key)
