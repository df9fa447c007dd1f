"""Reads of the evaluations app; every one checks the caller may view the workspace."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Count, QuerySet

from agents.models import Agent
from core.exceptions import NotFound
from evals.models import CaseResult, Dataset, Evaluation, GatePolicy, Suite
from tenants.permissions import Access, Perm
from workflows.models import Workflow


def datasets_list(*, access: Access) -> QuerySet[Dataset]:
    access.require(Perm.WORKSPACE_VIEW)
    return Dataset.objects.annotate(case_count=Count("cases"))


def dataset_get(*, access: Access, dataset_id: int) -> Dataset:
    dataset = datasets_list(access=access).filter(pk=dataset_id).first()
    if dataset is None:
        raise NotFound("No dataset with that id in this workspace.")
    return dataset


def suites_list(*, access: Access) -> QuerySet[Suite]:
    access.require(Perm.WORKSPACE_VIEW)
    return Suite.objects.select_related("dataset")


def suite_get(*, access: Access, suite_id: int) -> Suite:
    suite = suites_list(access=access).filter(pk=suite_id).first()
    if suite is None:
        raise NotFound("No evaluation suite with that id in this workspace.")
    return suite


def evaluations_list(*, access: Access) -> QuerySet[Evaluation]:
    access.require(Perm.WORKSPACE_VIEW)
    return Evaluation.objects.select_related("suite")


def evaluation_get(*, access: Access, evaluation_id: int) -> Evaluation:
    evaluation = evaluations_list(access=access).filter(pk=evaluation_id).first()
    if evaluation is None:
        raise NotFound("No evaluation with that id in this workspace.")
    return evaluation


def evaluation_results(*, evaluation: Evaluation) -> QuerySet[CaseResult]:
    return CaseResult.objects.filter(evaluation=evaluation).select_related("case")


def comparison_rows(
    *, left: Evaluation, right: Evaluation
) -> list[tuple[str, str, CaseResult | None, CaseResult | None]]:
    """(input, expected, left result, right result) per case of either evaluation, in the
    order of the dataset (two evaluations of the same suite share their cases)."""
    rows: dict[int, tuple[str, str, CaseResult | None, CaseResult | None]] = {}
    for result in evaluation_results(evaluation=left):
        rows[result.case.position] = (result.case.input, result.case.expected, result, None)
    for result in evaluation_results(evaluation=right):
        earlier = rows.get(result.case.position)
        if earlier is not None and earlier[0] == result.case.input:
            rows[result.case.position] = (earlier[0], earlier[1], earlier[2], result)
        else:
            key = result.case.position if earlier is None else -result.pk
            rows[key] = (result.case.input, result.case.expected, None, result)
    return [rows[key] for key in sorted(rows, key=lambda k: (k < 0, abs(k)))]


def latest_passed_score(
    *, agent_id: int | None = None, workflow_id: int | None = None
) -> tuple[Decimal, int] | None:
    """(score, cases) of the latest passed evaluation of the agent's current version (the
    workflow's active version), for a marketplace listing whose publisher chose to show it. In
    the agent's or workflow's schema."""
    if workflow_id is not None:
        workflow = Workflow.objects.filter(pk=workflow_id).first()
        if workflow is None or workflow.active_version_id is None:
            return None
        where = {"workflow_version_id": workflow.active_version_id}
    else:
        agent = Agent.objects.filter(pk=agent_id or 0).first()
        if agent is None or agent.current_version_id is None:
            return None
        where = {"agent_version_id": agent.current_version_id}
    latest = Evaluation.objects.filter(status=Evaluation.Status.PASSED, **where).first()
    if latest is None or latest.score is None:
        return None
    return latest.score.quantize(Decimal("0.0001")), latest.cases_done


def gate_policy() -> GatePolicy:
    """The workspace's gates (defaults when never saved). In the current schema."""
    return GatePolicy.objects.first() or GatePolicy()
