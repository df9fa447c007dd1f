"""Writes of the evaluations app: datasets, suites, evaluations (started here, run on the
worker one case at a time), and the release gate the marketplace asks before publishing.

An agent version answers each case in the evaluation's task. A workflow version answers each
case with an ordinary run (quota, budgets, ledger), started by the task; the task then comes
back every `WORKFLOW_POLL_SECONDS` to record the runs that ended and start the next cases, at
most `WORKFLOW_CASES_AT_ONCE` runs at a time, until every case has a result.

One pass at a time per evaluation: a pass holds the evaluation's session advisory lock (a
delivery that finds it taken leaves, the holder sends the next pass). One chain of passes: each
re-send carries a new token, noted in Redis (`_chain_key`, expiring after `CHAIN_TTL_SECONDS`);
a message carrying an older token leaves, so a redelivered or duplicated message that did a
pass takes the chain over and the older one ends. A re-send that could not be published, or a
worker lost between passes, leaves an evaluation queued or running that nobody works on:
`evaluations_recover` (the `evals.recover_stalled` beat task) sends it again."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.execution import answer_with_version
from agents.gateway.calls import UsageContext
from agents.models import Agent, AgentVersion
from agents.providers.base import Message
from core import recovery
from core.exceptions import ApplicationError, Conflict, NotFound, ValidationFailed
from core.hooks import listing_copy_check
from core.queue import enqueue
from evals import evaluators
from evals.models import Case, CaseResult, CaseRun, Dataset, Evaluation, GatePolicy, Suite
from evals.parsing import parse_cases
from tenants.permissions import Access, Perm
from tenants.schemas import current_schema
from workflows import engine, runs
from workflows.models import (
    RunStatus,
    StepRun,
    StepStatus,
    Workflow,
    WorkflowRun,
    WorkflowVersion,
)

logger = logging.getLogger(__name__)

RUN_EVALUATION_TASK = "evals.run_evaluation"
WORKFLOW_POLL_SECONDS = 1.0
WORKFLOW_CASES_AT_ONCE = 5
WORKFLOW_CASE_TIMEOUT = timedelta(minutes=15)
# A chain's token outlives many passes; once it expired, the chain is taken for dead.
CHAIN_TTL_SECONDS = 120
# Queued or running this long with nobody on it and no live chain: sent again (at most once per
# RECOVER_EVERY_SECONDS).
STALLED_AFTER = timedelta(minutes=2)
RECOVER_EVERY_SECONDS = 60
RECOVER_BATCH = 500


def _name(name: str) -> str:
    cleaned = (name or "").strip()
    if not cleaned:
        raise ValidationFailed("Give it a name.", fields={"name": ["Required."]})
    if len(cleaned) > 80:
        raise ValidationFailed("The name is too long.", fields={"name": ["At most 80."]})
    return cleaned


@transaction.atomic
def dataset_import(
    *, access: Access, name: str, filename: str, data: bytes, description: str = ""
) -> Dataset:
    """A new dataset from a .csv or .jsonl upload (evals/parsing.py)."""
    access.require(Perm.BUILD)
    cleaned = _name(name)
    cases = parse_cases(filename=filename, data=data)
    if Dataset.objects.filter(name=cleaned).exists():
        raise ValidationFailed(
            "That name is taken.", fields={"name": ["A dataset already has this name."]}
        )
    dataset = Dataset.objects.create(
        name=cleaned, description=description.strip()[:300], created_by_id=access.actor_id
    )
    Case.objects.bulk_create(
        Case(dataset=dataset, position=i, input=c.input, expected=c.expected)
        for i, c in enumerate(cases, start=1)
    )
    return dataset


@transaction.atomic
def suite_create(
    *,
    access: Access,
    name: str,
    dataset_id: int,
    evaluators_spec: Any,
    pass_threshold: Decimal = Decimal(1),
) -> Suite:
    access.require(Perm.BUILD)
    cleaned = _name(name)
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None:
        raise ValidationFailed("Choose a dataset.", fields={"dataset": ["No such dataset."]})
    specs = evaluators.validated_specs(evaluators_spec)
    if not Decimal(0) <= pass_threshold <= Decimal(1):
        raise ValidationFailed(
            "The pass threshold is a share.", fields={"pass_threshold": ["Between 0 and 1."]}
        )
    if Suite.objects.filter(name=cleaned).exists():
        raise ValidationFailed(
            "That name is taken.", fields={"name": ["A suite already has this name."]}
        )
    return Suite.objects.create(
        name=cleaned,
        dataset=dataset,
        evaluators=specs,
        pass_threshold=pass_threshold,
        created_by_id=access.actor_id,
    )


def evaluation_start(
    *,
    access: Access,
    suite_id: int,
    agent_id: int | None = None,
    workflow_id: int | None = None,
    version_number: int | None = None,
) -> Evaluation:
    """Queue an evaluation of an agent's or a workflow's version (default: the agent's current
    version, the workflow's active one); the worker runs it after commit. Exactly one of
    `agent_id` and `workflow_id`."""
    access.require(Perm.RUN)
    if (agent_id is None) == (workflow_id is None):
        raise ValidationFailed(
            "Choose an agent or a workflow to evaluate.",
            fields={"agent": ["Choose an agent or a workflow (one of them)."]},
        )
    with transaction.atomic():
        suite = Suite.objects.filter(pk=suite_id).first()
        if suite is None:
            raise NotFound("No evaluation suite with that id in this workspace.")
        if workflow_id is not None:
            target = _workflow_target(workflow_id, version_number)
        else:
            target = _agent_target(agent_id or 0, version_number)
        evaluation = Evaluation.objects.create(
            suite=suite,
            cases_total=suite.dataset.cases.count(),
            created_by_id=access.actor_id,
            **target,
        )
        transaction.on_commit(partial(_enqueue, evaluation.pk, current_schema()), robust=True)
    return evaluation


def _agent_target(agent_id: int, version_number: int | None) -> dict[str, Any]:
    agent = Agent.objects.filter(pk=agent_id, archived_at__isnull=True).first()
    if agent is None:
        raise NotFound("No active agent with that id in this workspace.")
    version = (
        AgentVersion.objects.filter(agent=agent, number=version_number).first()
        if version_number is not None
        else agent.current_version
    )
    if version is None:
        raise ValidationFailed(
            "No such version.", fields={"version": [f"{agent.name} has no such version."]}
        )
    if agent.listing_version_id is not None:
        # A listing's copy answers the cases without runs: the marketplace decides (a paid
        # listing's copy needs a runnable purchase; a per-run purchase's copy answers only in
        # runs, which are what it charges: 402, and no evaluation is created). A workflow
        # target's cases are runs (`runs.run_start`): asked and charged like any run.
        try:
            listing_copy_check("agent", agent.listing_version_id, surface="evaluation")
        except ApplicationError as exc:
            exc.fields = exc.fields or {"agent": [exc.message]}  # beside the agent picker
            raise
    return {
        "target": Evaluation.Target.AGENT,
        "agent_id": agent.pk,
        "agent_version_id": version.pk,
        "version_number": version.number,
        "target_name": agent.name,
    }


def _workflow_target(workflow_id: int, version_number: int | None) -> dict[str, Any]:
    workflow = Workflow.objects.filter(pk=workflow_id, archived_at__isnull=True).first()
    if workflow is None:
        raise NotFound("No active workflow with that id in this workspace.")
    version = (
        WorkflowVersion.objects.filter(workflow=workflow, number=version_number).first()
        if version_number is not None
        else workflow.active_version
    )
    if version is None:
        raise ValidationFailed(
            "No such version.",
            fields={"version": [f"{workflow.name} has no such version (or none published)."]},
        )
    try:
        runs.version_require_runnable(workflow=workflow, version=version)
    except ValidationFailed as exc:
        raise ValidationFailed(exc.message, fields={"version": [exc.message]}) from exc
    return {
        "target": Evaluation.Target.WORKFLOW,
        "workflow_id": workflow.pk,
        "workflow_version_id": version.pk,
        "version_number": version.number,
        "target_name": workflow.name,
    }


def _enqueue(
    evaluation_id: int, schema: str, countdown: float | None = None, chain: str | None = None
) -> None:
    """Send the evaluation's task to the workspace `schema` (the caller's schema when it
    registered the callback: a caller in the public schema may have left it by commit); with
    `chain`, as the next pass of that chain (noted first). A broker that does not answer loses
    the message: `evaluations_recover` sends it again later."""
    with schema_context(schema):
        recovery.mark_active(schema)
        try:
            if chain is not None:
                _chain_set(evaluation_id, chain)
            args = (evaluation_id,) if chain is None else (evaluation_id, chain)
            enqueue(RUN_EVALUATION_TASK, *args, countdown=countdown)
        except Exception:  # the broker's errors vary by transport; recovery makes up for it
            logger.warning("sending evaluation %s failed", evaluation_id, exc_info=True)


def evaluation_lock_key(evaluation_id: int) -> int:
    """The session advisory lock a pass of the evaluation holds (in the current schema)."""
    return recovery.advisory_key(current_schema(), "evaluation", evaluation_id)


def _chain_key(evaluation_id: int) -> str:
    prefix = settings.CACHES["default"].get("KEY_PREFIX") or "am"
    return f"{prefix}:evals:chain:{current_schema()}:{evaluation_id}"


def _chain_set(evaluation_id: int, token: str) -> None:
    try:
        recovery.redis_client().set(_chain_key(evaluation_id), token, ex=CHAIN_TTL_SECONDS)
    except (redis.RedisError, OSError):
        logger.debug("noting evaluation %s's chain failed", evaluation_id, exc_info=True)


def evaluation_chain(evaluation_id: int) -> str | None:
    """The token of the evaluation's live chain of passes (None: none, or Redis is down)."""
    try:
        value = recovery.redis_client().get(_chain_key(evaluation_id))
    except (redis.RedisError, OSError):
        return None
    return value.decode() if isinstance(value, bytes) else None


def _chain_forget(evaluation_id: int) -> None:
    try:
        recovery.redis_client().delete(_chain_key(evaluation_id))
    except (redis.RedisError, OSError):
        logger.debug("forgetting evaluation %s's chain failed", evaluation_id, exc_info=True)


def evaluations_recover() -> list[int]:
    """In the current workspace: send again the evaluations queued or running for more than
    STALLED_AFTER that no pass works on (their lock is free) and no chain polls (its token
    expired): a lost message, a lost worker or a re-send that failed to publish. Returns
    their ids."""
    ids = list(
        Evaluation.objects.filter(
            status__in=[Evaluation.Status.QUEUED, Evaluation.Status.RUNNING],
            created_at__lt=timezone.now() - STALLED_AFTER,
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:RECOVER_BATCH]
    )
    idle = recovery.unheld({pk: evaluation_lock_key(pk) for pk in ids})
    stuck = [pk for pk in idle if evaluation_chain(pk) is None]
    schema = current_schema()
    due = recovery.resend_due("evaluation", schema, stuck, every_seconds=RECOVER_EVERY_SECONDS)
    for pk in due:
        _enqueue(pk, schema)
    return due


def _answer_case(version: AgentVersion, case: Case) -> tuple[evaluators.Answer, str]:
    # Evaluate the model, not the response cache: a cached answer costs nothing and would
    # hide the version's real cost and latency (the change is in memory only).
    version.cache_enabled = False
    try:
        answer = answer_with_version(
            version,
            messages=[Message(role="user", content=case.input)],
            context=UsageContext(
                agent_id=version.agent_id, run_cap_usd=version.max_cost_per_run_usd
            ),
        )
    except ApplicationError as exc:
        empty = evaluators.Answer(case.input, case.expected, "", Decimal(0), 0, version.agent_id)
        return empty, str(exc)
    result = evaluators.Answer(
        input=case.input,
        expected=case.expected,
        output=answer.text,
        cost_usd=answer.cost_usd,
        latency_ms=answer.latency_ms,
        agent_id=version.agent_id,
    )
    return result, "" if answer.ok else answer.error


def evaluation_run_case(*, evaluation: Evaluation, version: AgentVersion, case: Case) -> None:
    """Answer and judge one case, once: a case that already has a result is skipped."""
    if CaseResult.objects.filter(evaluation=evaluation, case=case).exists():
        return
    answer, error = _answer_case(version, case)
    _record(evaluation, case, answer, error, judge_errors=True)


def _record(
    evaluation: Evaluation,
    case: Case,
    answer: evaluators.Answer,
    error: str,
    *,
    judge_errors: bool,
    run_id: int | None = None,
) -> None:
    """Judge `answer` and store the case's result, once (a parallel delivery's wins)."""
    verdicts = (
        [evaluators.evaluate(spec, answer) for spec in evaluation.suite.evaluators]
        if judge_errors or not error
        else []
    )
    try:
        with transaction.atomic():
            CaseResult.objects.create(
                evaluation=evaluation,
                case=case,
                output=answer.output,
                error=error,
                verdicts=[v.as_json() for v in verdicts],
                passed=not error and all(v.passed for v in verdicts),
                cost_usd=answer.cost_usd,
                latency_ms=answer.latency_ms,
                run_id=run_id,
            )
    except IntegrityError:  # a parallel delivery recorded it first
        return
    _count(evaluation)


# --- workflow versions -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    output: str
    error: str
    cost_usd: Decimal
    latency_ms: int


def output_text(output: Any) -> str:
    """What the evaluators read of a run's output: a string as it is, anything else as its
    JSON text (so `json_schema` validates the object and `regex` searches its JSON)."""
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    return json.dumps(output, ensure_ascii=False)


def case_inputs(definition: dict[str, Any], text: str) -> dict[str, Any]:
    """A case's input as a workflow run's inputs: a JSON object of input name → value; or,
    when the workflow declares one input, the text itself (a string input) or its JSON value.
    Checked exactly as a run's inputs are (ValidationFailed names each bad input)."""
    try:
        parsed: Any = json.loads(text)
        is_json = True
    except ValueError:
        parsed, is_json = text, False
    declared: dict[str, Any] = definition.get("inputs") or {}
    if isinstance(parsed, dict):
        inputs = parsed
    elif len(declared) == 1:
        name, spec = next(iter(declared.items()))
        string = (spec or {}).get("type", "string") == "string"
        inputs = {name: text if string or not is_json else parsed}
    else:
        names = ", ".join(declared) or "none declared"
        problem = f"the case's input must be a JSON object of the workflow's inputs ({names})"
        raise ValidationFailed(
            f"The run's inputs are not valid: {problem}.", fields={"inputs": [problem]}
        )
    return runs.inputs_check(definition, inputs)


def _waiting_for_a_person(run: WorkflowRun) -> StepRun | None:
    return (
        StepRun.objects.filter(run=run, node_type="approval", status=StepStatus.WAITING)
        .order_by("id")
        .first()
    )


def _run_outcome(case_run: CaseRun, run: WorkflowRun | None) -> _Outcome | None:
    """The case's outcome once its run ended (None while it goes on). A run waiting for an
    approval, or still going after WORKFLOW_CASE_TIMEOUT, is cancelled and fails the case."""
    if run is None:
        return _Outcome("", "The case's run was deleted.", Decimal(0), 0)
    if not run.finished:
        approval = _waiting_for_a_person(run) if run.status == RunStatus.WAITING else None
        late = timezone.now() - case_run.created_at > WORKFLOW_CASE_TIMEOUT
        if approval is None and not late:
            return None
        reason = (
            f"Step “{approval.node_id}” waits for a person's approval; an evaluation cannot "
            "wait for one, so its run was cancelled."
            if approval is not None
            else f"The run did not end within {WORKFLOW_CASE_TIMEOUT.seconds // 60} minutes; "
            "it was cancelled."
        )
        engine.run_cancel_internal(run.pk, f"Cancelled by the evaluation: {reason}")
        run.refresh_from_db()
        error = reason
    elif run.status == RunStatus.SUCCEEDED:
        error = ""
    else:
        error = run.error or f"The run {run.get_status_display().lower()}."
    started = run.started_at or run.created_at
    ended = run.finished_at or timezone.now()
    latency = max(0, int((ended - started).total_seconds() * 1000))
    return _Outcome(output_text(run.output), error, run.cost_usd, latency)


def _start_case_run(evaluation: Evaluation, version: WorkflowVersion, case: Case) -> bool:
    """Start the run of one case (True), or record why it cannot start (False)."""
    try:
        inputs = case_inputs(version.definition, case.input)
        with transaction.atomic():  # the run and its record, or neither
            run = runs.run_start(
                workflow=version.workflow,
                version=version,
                inputs=inputs,
                trigger=WorkflowRun.TriggerKind.MANUAL,
                created_by_id=evaluation.created_by_id,
            )
            CaseRun.objects.create(evaluation=evaluation, case=case, run_id=run.pk)
    except IntegrityError:  # a parallel delivery started this case
        return True
    except ApplicationError as exc:
        answer = evaluators.Answer(case.input, case.expected, "", Decimal(0), 0)
        _record(evaluation, case, answer, str(exc.message), judge_errors=False)
        return False
    return True


def _workflow_cases(evaluation: Evaluation, version: WorkflowVersion, cases: list[Case]) -> bool:
    """One pass over a workflow evaluation: record the runs that ended, start the next cases.
    True when every case has a result."""
    done = set(CaseResult.objects.filter(evaluation=evaluation).values_list("case_id", flat=True))
    started = {c.case_id: c for c in CaseRun.objects.filter(evaluation=evaluation)}
    open_runs = WorkflowRun.objects.in_bulk(
        [c.run_id for case_id, c in started.items() if case_id not in done]
    )
    by_id = {case.pk: case for case in cases}
    in_flight = 0
    for case_id, case_run in started.items():
        if case_id in done or case_id not in by_id:
            continue
        outcome = _run_outcome(case_run, open_runs.get(case_run.run_id))
        if outcome is None:
            in_flight += 1
            continue
        case = by_id[case_id]
        answer = evaluators.Answer(
            case.input, case.expected, outcome.output, outcome.cost_usd, outcome.latency_ms
        )
        _record(evaluation, case, answer, outcome.error, judge_errors=False, run_id=case_run.run_id)
    for case in cases:
        if in_flight >= WORKFLOW_CASES_AT_ONCE:
            break
        if case.pk in done or case.pk in started:
            continue
        if _start_case_run(evaluation, version, case):
            in_flight += 1
    return in_flight == 0


def _count(evaluation: Evaluation) -> None:
    totals = CaseResult.objects.filter(evaluation=evaluation).aggregate(
        done=Count("id"), passed=Count("id", filter=Q(passed=True)), cost=Sum("cost_usd")
    )
    Evaluation.objects.filter(pk=evaluation.pk).update(
        cases_done=totals["done"], cases_passed=totals["passed"], cost_usd=totals["cost"] or 0
    )


def evaluation_execute(evaluation_id: int, chain: str | None = None) -> str | None:
    """The worker's whole job for an evaluation (for a workflow, one pass of it: the task is
    sent again, after WORKFLOW_POLL_SECONDS, until every case has a result). At least once: a
    redelivery answers only the cases without a result (or run) and decides the same outcome.
    None, doing nothing, when another pass holds the evaluation or `chain` is an older chain's
    token (see the module's docstring)."""
    key = evaluation_lock_key(evaluation_id)
    if not recovery.advisory_try_lock(key):
        return None
    try:
        live = evaluation_chain(evaluation_id) if chain is not None else None
        if live is not None and live != chain:
            return None
        return _execute(evaluation_id)
    finally:
        recovery.advisory_unlock(key)


def _execute(evaluation_id: int) -> str | None:
    evaluation = Evaluation.objects.select_related("suite").filter(pk=evaluation_id).first()
    if evaluation is None:
        return None
    if evaluation.finished:
        return evaluation.status
    Evaluation.objects.filter(pk=evaluation.pk).update(status=Evaluation.Status.RUNNING)
    cases = list(Case.objects.filter(dataset_id=evaluation.suite.dataset_id).order_by("position"))
    found: bool
    if evaluation.is_workflow:
        workflow_version = (
            WorkflowVersion.objects.select_related("workflow")
            .filter(pk=evaluation.workflow_version_id or 0)
            .first()
        )
        found = workflow_version is not None
        if workflow_version is not None and not _workflow_cases(
            evaluation, workflow_version, cases
        ):
            again = partial(
                _enqueue,
                evaluation.pk,
                current_schema(),
                countdown=WORKFLOW_POLL_SECONDS,
                chain=uuid.uuid4().hex,
            )
            transaction.on_commit(again, robust=True)
            return str(Evaluation.Status.RUNNING)
    else:
        version = AgentVersion.objects.filter(pk=evaluation.agent_version_id or 0).first()
        found = version is not None
        if version is not None:
            for case in cases:
                evaluation_run_case(evaluation=evaluation, version=version, case=case)
    _count(evaluation)
    evaluation.refresh_from_db()
    score = evaluation.score or Decimal(0)
    complete = found and evaluation.cases_done == len(cases) > 0
    passed = complete and score >= evaluation.suite.pass_threshold
    status = Evaluation.Status.PASSED if passed else Evaluation.Status.FAILED
    Evaluation.objects.filter(pk=evaluation.pk).update(status=status, finished_at=timezone.now())
    _chain_forget(evaluation.pk)
    return str(status)


@transaction.atomic
def gate_policy_set(
    *, access: Access, require_for_publish: bool, require_for_upgrade: bool | None = None
) -> GatePolicy:
    access.require(Perm.WORKSPACE_UPDATE)
    policy = GatePolicy.objects.select_for_update().first() or GatePolicy()
    policy.require_for_publish = require_for_publish
    if require_for_upgrade is not None:
        policy.require_for_upgrade = require_for_upgrade
    policy.save()
    return policy


def _current_version(
    agent_id: int | None, workflow_id: int | None
) -> tuple[dict[str, int], str] | None:
    """({"agent_version_id" | "workflow_version_id": id}, "Name vN") of the agent's current
    version or the workflow's active one; None when there is none."""
    if workflow_id is not None:
        workflow = Workflow.objects.select_related("active_version").filter(pk=workflow_id).first()
        if workflow is None or workflow.active_version is None:
            return None
        label = f"{workflow.name} v{workflow.active_version.number}"
        return {"workflow_version_id": workflow.active_version.pk}, label
    agent = Agent.objects.select_related("current_version").filter(pk=agent_id or 0).first()
    if agent is None or agent.current_version is None:
        return None
    label = f"{agent.name} v{agent.current_version.number}"
    return {"agent_version_id": agent.current_version.pk}, label


def latest_finished(
    *, agent_id: int | None = None, workflow_id: int | None = None
) -> tuple[Evaluation | None, str] | None:
    """(latest finished evaluation of the current version or None, "Name vN"), or None when the
    agent or workflow has no current version."""
    current = _current_version(agent_id, workflow_id)
    if current is None:
        return None
    where, label = current
    latest = (
        Evaluation.objects.select_related("suite")
        .filter(**where)
        .filter(status__in=[Evaluation.Status.PASSED, Evaluation.Status.FAILED])
        .first()
    )
    return latest, label


def publish_gate_check(*, agent_id: int | None = None, workflow_id: int | None = None) -> None:
    """Raise Conflict, naming the evaluation, when the workspace requires a passing
    evaluation before publishing and the agent's current version (the workflow's active
    version) has none. In the agent's or workflow's workspace schema."""
    policy = GatePolicy.objects.first()
    if policy is None or not policy.require_for_publish:
        return
    found = latest_finished(agent_id=agent_id, workflow_id=workflow_id)
    if found is None:
        return  # the publisher reports the missing agent or workflow
    latest, version = found
    if latest is None:
        raise Conflict(
            f"This workspace requires a passing evaluation before publishing, and {version} "
            "has not been evaluated yet."
        )
    if latest.status != Evaluation.Status.PASSED:
        raise Conflict(
            f"This workspace requires a passing evaluation before publishing: evaluation "
            f"#{latest.pk} (“{latest.suite.name}”) of {version} failed with "
            f"{latest.cases_passed}/{latest.cases_done} cases passing."
        )
