"""Executing an agent run (called by the Celery task, in the workspace's schema).

Delivery is at least once, and liveness is the executor's database session: whoever executes a
run holds a session advisory lock on it until it has finished (core/recovery.py). A message for
a run whose lock is held is a duplicate and does nothing; a run marked running whose lock nobody
holds lost its worker (killed, or its database session ended) and is started again as a new
attempt (`attempt` counts them; the earlier attempt's model calls stay in the ledger as
`pending` rows). `runs_recover` (the recovery sweep) re-sends such runs at once, and queued
runs whose message was lost (sent while the broker was down, or prefetched by a dead worker).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from agents import memory
from agents.execution import answer_with_version
from agents.gateway.calls import GatewayError, UsageContext, spent_before_failing
from agents.models import AgentRun, MemoryMode
from agents.runs import live
from agents.tools.loop import OnEvent
from agents.webhooks import webhook_enqueue
from core import recovery
from core.exceptions import ApplicationError
from core.hooks import RunFinished, run_finished
from core.queue import enqueue_many
from notifications.kinds import Kind
from notifications.services import Event, notify_later
from tenants.models import Workspace
from tenants.schemas import current_schema

logger = logging.getLogger(__name__)

QUEUED_GRACE = timedelta(seconds=15)  # a queued run not started by then is re-sent
RESEND_EVERY = 30  # seconds: the same run is re-sent at most this often
RECOVER_BATCH = 500
# The task that executes a run (agents/tasks.py declares it under this name).
EXECUTE_RUN_TASK = "agents.execute_run"
LOST_WORKER_NOTE = "retried after a worker was lost"
# A run whose worker died this many times is failed instead of started again: something in it
# (memory, a hard time limit) kills workers, and every attempt may pay the provider again.
MAX_ATTEMPTS = 3


def run_lock_key(run_id: int) -> int:
    return recovery.advisory_key(current_schema(), "agent-run", run_id)


def _claim(run_id: int) -> AgentRun | None:
    """Become the run's executor (its advisory lock) and mark it running as a new attempt.
    None when someone alive executes it already, or it finished. Called holding the lock;
    a running run found here had an executor that is gone."""
    with transaction.atomic():
        run = (
            AgentRun.objects.select_for_update(of=("self",))
            .select_related("version", "agent")
            .filter(pk=run_id)
            .first()
        )
        if run is None or run.status not in (AgentRun.Status.QUEUED, AgentRun.Status.RUNNING):
            return None
        if run.status == AgentRun.Status.RUNNING:
            if run.attempt >= MAX_ATTEMPTS:
                logger.error(
                    "agent run %s in %s lost its worker %s times; failed",
                    run.pk,
                    current_schema(),
                    run.attempt,
                )
                _finish(
                    run,
                    status=AgentRun.Status.FAILED,
                    error=(
                        f"The run's worker was lost {run.attempt} times, so it was stopped "
                        "rather than started again (each attempt may be paid for)."
                    ),
                )
                return None
            logger.warning(
                "agent run %s in %s: attempt %s lost its worker; %s",
                run.pk,
                current_schema(),
                run.attempt,
                LOST_WORKER_NOTE,
            )
        run.status = AgentRun.Status.RUNNING
        run.started_at = run.started_at or timezone.now()
        run.attempt += 1
        run.save(update_fields=["status", "started_at", "attempt"])
        return run


def execute_run(run_id: int) -> str | None:
    key = run_lock_key(run_id)
    if not recovery.advisory_try_lock(key):
        return None  # a live executor has it: this message is a duplicate
    try:
        run = _claim(run_id)
        if run is None:
            return None
        return _execute(run)
    finally:
        recovery.advisory_unlock(key)


def _execute(run: AgentRun) -> str:
    """A run of a conversation (an A2A context, decision 125) is its next turn: the version's
    memory mode decides which earlier runs the model sees, its text is published as it is
    written (agents/runs/live.py), and a summary-memory conversation's summary is refreshed
    after it, as after a chat turn."""
    if run.conversation_id is None:
        return _answer(run, on_event=None)
    with live.RunPublisher(schema_name=current_schema(), run=run) as publisher:
        publisher.status(run.status)
        status = _answer(run, on_event=publisher.on_event)
        publisher.status(status)
    if status == AgentRun.Status.SUCCEEDED and run.version.memory_mode == MemoryMode.SUMMARY:
        memory.summary_refresh(conversation_id=run.conversation_id, version=run.version)
    return status


def _answer(run: AgentRun, *, on_event: OnEvent | None) -> str:
    version = run.version
    try:
        answer = answer_with_version(
            version,
            messages=memory.messages_for_run(run),
            context=UsageContext(
                agent_id=run.agent_id,
                run_id=run.pk,
                run_cap_usd=version.max_cost_per_run_usd,
                user_id=run.created_by_id,
            ),
            on_event=on_event,
        )
    except (GatewayError, ApplicationError) as exc:
        usage, run.cost_usd = spent_before_failing(exc)
        run.input_tokens, run.output_tokens = usage.tokens_in, usage.output_tokens
        _finish(run, status=AgentRun.Status.FAILED, error=exc.message)
        return run.status
    run.tool_steps = answer.tool_steps
    run.input_tokens = answer.usage.tokens_in
    run.output_tokens = answer.usage.output_tokens
    run.cost_usd = answer.cost_usd
    run.cache_hit = answer.cache_hit
    run.cache_entry_id = answer.cache_entry_id
    run.output_data = answer.data
    status = AgentRun.Status.SUCCEEDED if answer.ok else AgentRun.Status.FAILED
    _finish(run, status=status, output=answer.text if answer.ok else "", error=answer.error)
    return run.status


def _finish(run: AgentRun, *, status: str, output: str = "", error: str = "") -> None:
    run.status = status
    run.output = output
    run.error = error
    run.finished_at = timezone.now()
    fields = [
        "status",
        "output",
        "output_data",
        "error",
        "tool_steps",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "cache_hit",
        "cache_entry_id",
        "finished_at",
    ]
    with transaction.atomic():
        run.save(update_fields=fields)
        if run.callback_url:
            webhook_enqueue(run=run)
        if status == AgentRun.Status.FAILED and run.created_by_id:
            _notify_failed(run)
    run_finished.fire(_finished_event(run))  # committed: the executor runs outside a transaction


def _notify_failed(run: AgentRun) -> None:
    """Tell whoever started the run (after commit) that it failed."""
    schema = current_schema()
    workspace = Workspace.objects.only("pk", "slug").get(schema_name=schema)
    notify_later(
        recipients=lambda: [run.created_by_id],
        event=Event(
            kind=Kind.RUN_FAILED,
            dedupe_key=f"run_failed:{schema}:agent:{run.pk}",
            title=f"Agent run #{run.pk} of {run.agent.name} failed",
            body=run.error[:1000],
            url=reverse(
                "agent_run_detail", kwargs={"workspace_slug": workspace.slug, "run_id": run.pk}
            ),
            workspace_id=workspace.pk,
        ),
    )


def _finished_event(run: AgentRun) -> RunFinished:
    finished, started = run.finished_at or timezone.now(), run.started_at or run.created_at
    return RunFinished(
        kind="agent",
        run_id=run.pk,
        schema_name=current_schema(),
        status=run.status,
        listing_version_id=run.agent.listing_version_id,
        latency_ms=max(int((finished - started).total_seconds() * 1000), 0),
        cost_usd=run.cost_usd,
    )


def runs_recover(
    *, queue_backlog: int | None = None, queued_after: timedelta = QUEUED_GRACE
) -> int:
    """In the current workspace, re-send agent runs that lost their worker (running, but nobody
    holds their advisory lock) and queued runs not started within `queued_after` (left alone
    while the broker's queue holds more than RECOVER_BATCH messages: they are most likely
    still in it). Each run is re-sent at most once per RESEND_EVERY; a duplicate does
    nothing. Returns how many runs were re-sent."""
    running = AgentRun.objects.filter(status=AgentRun.Status.RUNNING).values_list("pk", flat=True)[
        :RECOVER_BATCH
    ]
    lost = recovery.unheld({pk: run_lock_key(pk) for pk in running})
    resend = set(lost)
    schema = current_schema()
    if running or AgentRun.objects.filter(status=AgentRun.Status.QUEUED).exists():
        recovery.mark_active(schema)  # swept often while it has work (after Redis lost the list)
    if queue_backlog is None or queue_backlog <= RECOVER_BATCH:
        old = timezone.now() - queued_after
        queued = AgentRun.objects.filter(status=AgentRun.Status.QUEUED, created_at__lt=old)
        resend |= set(queued.values_list("pk", flat=True)[:RECOVER_BATCH])
    due = recovery.resend_due("agent-run", schema, sorted(resend), every_seconds=RESEND_EVERY)
    if due:
        recovery.mark_active(schema)
        enqueue_many(EXECUTE_RUN_TASK, [((run_id,), 0.0) for run_id in due])
        logger.warning(
            "re-sent %s agent run(s) in %s (%s whose worker was lost: %s)",
            len(due),
            schema,
            len(set(due) & set(lost)),
            sorted(set(due) & set(lost))[:20],
        )
    return len(due)
