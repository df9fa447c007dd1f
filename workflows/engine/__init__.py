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
2. **run the node** outside any transaction, inside `agents.gateway.replay.recording(...)` and a
   deadline (nodes.py);
3. **complete** — one transaction that locks the run row (every write to a run's steps happens
   under that lock, except the claim, which the advisory lock covers), re-checks the step is
   still running the same attempt (idempotent completion), stores the outcome, schedules
   successors (branches, skip propagation, joins, map items), aggregates the run's tokens and
   cost, finishes the run when nothing is left, and after commit enqueues what became ready and
   tells live pages (`workflows.events.run_changed`). Its writes go out as one statement
   (RunTxn.flush), which also releases the advisory lock once the step's row is written: a
   second delivery then waits on that row until the commit and finds the step finished.

The per-step statements are hand-written SQL (workflows/engine/sql.py says why).
Lock order is always run row, then step rows; the claim locks only its step row and never waits
for the run row while holding it.

Modules, each importing only those above it: `plans` (a version's parsed definition),
`dispatch` (sending steps to the worker, side effects after commit), `sql`, `create` (new
runs), `locked` (one run's row lock, batched writes, cancelling), `txn` (the state machine),
`execute` (one step), `transitions` (decisions, webhooks, retries, recovery).
"""

from workflows.engine.create import run_create, run_start_internal
from workflows.engine.dispatch import executing_inline
from workflows.engine.execute import step_execute
from workflows.engine.locked import run_cancel_internal
from workflows.engine.plans import Plan, plan_for
from workflows.engine.transitions import (
    stalled_recover,
    step_decide,
    steps_retry,
    webhook_expire,
    webhook_resume,
)

__all__ = [
    "Plan",
    "executing_inline",
    "plan_for",
    "run_cancel_internal",
    "run_create",
    "run_start_internal",
    "stalled_recover",
    "step_decide",
    "step_execute",
    "steps_retry",
    "webhook_expire",
    "webhook_resume",
]
