"""Writes of the evaluations app: datasets, suites, evaluations (started here, run on the
worker one case at a time), and the release gate the marketplace asks before publishing."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from agents.execution import answer_with_version
from agents.gateway.calls import UsageContext
from agents.models import Agent, AgentVersion
from agents.providers.base import Message
from core import recovery
from core.exceptions import ApplicationError, Conflict, NotFound, ValidationFailed
from core.queue import enqueue
from evals import evaluators
from evals.models import Case, CaseResult, Dataset, Evaluation, GatePolicy, Suite
from evals.parsing import parse_cases
from tenants.permissions import Access, Perm
from tenants.schemas import current_schema

logger = logging.getLogger(__name__)

RUN_EVALUATION_TASK = "evals.run_evaluation"


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
    *, access: Access, suite_id: int, agent_id: int, version_number: int | None = None
) -> Evaluation:
    """Queue an evaluation of an agent version (default: its current one); the worker runs
    it after commit."""
    access.require(Perm.RUN)
    with transaction.atomic():
        suite = Suite.objects.filter(pk=suite_id).first()
        if suite is None:
            raise NotFound("No evaluation suite with that id in this workspace.")
        agent = Agent.objects.filter(pk=agent_id, archived_at__isnull=True).first()
        if agent is None:
            raise NotFound("No active agent with that id in this workspace.")
        versions = AgentVersion.objects.filter(agent=agent)
        version = (
            versions.filter(number=version_number).first()
            if version_number is not None
            else agent.current_version
        )
        if version is None:
            raise ValidationFailed(
                "No such version.", fields={"version": [f"{agent.name} has no such version."]}
            )
        evaluation = Evaluation.objects.create(
            suite=suite,
            agent_id=agent.pk,
            agent_version_id=version.pk,
            agent_version_number=version.number,
            agent_name=agent.name,
            cases_total=suite.dataset.cases.count(),
            created_by_id=access.actor_id,
        )
        transaction.on_commit(lambda: _enqueue(evaluation.pk), robust=True)
    return evaluation


def _enqueue(evaluation_id: int) -> None:
    recovery.mark_active(current_schema())
    enqueue(RUN_EVALUATION_TASK, evaluation_id)


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
    verdicts = [evaluators.evaluate(spec, answer) for spec in evaluation.suite.evaluators]
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
            )
    except IntegrityError:  # a parallel delivery recorded it first
        return
    _count(evaluation)


def _count(evaluation: Evaluation) -> None:
    totals = CaseResult.objects.filter(evaluation=evaluation).aggregate(
        done=Count("id"), passed=Count("id", filter=Q(passed=True)), cost=Sum("cost_usd")
    )
    Evaluation.objects.filter(pk=evaluation.pk).update(
        cases_done=totals["done"], cases_passed=totals["passed"], cost_usd=totals["cost"] or 0
    )


def evaluation_execute(evaluation_id: int) -> str | None:
    """The worker's whole job for an evaluation. At least once: a redelivery answers only
    the cases without a result and then decides the same outcome."""
    evaluation = Evaluation.objects.select_related("suite").filter(pk=evaluation_id).first()
    if evaluation is None:
        return None
    if evaluation.finished:
        return evaluation.status
    Evaluation.objects.filter(pk=evaluation.pk).update(status=Evaluation.Status.RUNNING)
    version = AgentVersion.objects.filter(pk=evaluation.agent_version_id).first()
    cases = list(Case.objects.filter(dataset_id=evaluation.suite.dataset_id).order_by("position"))
    if version is not None:
        for case in cases:
            evaluation_run_case(evaluation=evaluation, version=version, case=case)
    _count(evaluation)
    evaluation.refresh_from_db()
    score = evaluation.score or Decimal(0)
    complete = version is not None and evaluation.cases_done == len(cases) > 0
    passed = complete and score >= evaluation.suite.pass_threshold
    status = Evaluation.Status.PASSED if passed else Evaluation.Status.FAILED
    Evaluation.objects.filter(pk=evaluation.pk).update(status=status, finished_at=timezone.now())
    return str(status)


@transaction.atomic
def gate_policy_set(*, access: Access, require_for_publish: bool) -> GatePolicy:
    access.require(Perm.WORKSPACE_UPDATE)
    policy = GatePolicy.objects.select_for_update().first() or GatePolicy()
    policy.require_for_publish = require_for_publish
    policy.save()
    return policy


def publish_gate_check(*, agent_id: int) -> None:
    """Raise Conflict, naming the evaluation, when the workspace requires a passing
    evaluation before publishing and the agent's current version has none. In the agent's
    workspace schema."""
    policy = GatePolicy.objects.first()
    if policy is None or not policy.require_for_publish:
        return
    agent = Agent.objects.filter(pk=agent_id).first()
    if agent is None or agent.current_version_id is None:
        return  # the publisher reports the missing agent
    latest = (
        Evaluation.objects.select_related("suite")
        .filter(agent_version_id=agent.current_version_id)
        .exclude(status__in=[Evaluation.Status.QUEUED, Evaluation.Status.RUNNING])
        .first()
    )
    version = f"{agent.name} v{agent.current_version.number if agent.current_version else ''}"
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
