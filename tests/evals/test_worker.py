"""An evaluation runs on a real Celery worker; a second delivery of its task (as after a lost
worker with acks_late) answers no case twice; a workflow evaluation's task comes back until
its runs (executed by the same worker) have ended."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from agents.models import UsageRecord
from agents.services import agent_create
from evals import services
from evals.models import CaseResult, CaseRun, Evaluation
from evals.tasks import run_evaluation
from tests.helpers.personas import World, access_of
from tests.helpers.workflows import flow, transform
from workflows.models import WorkflowRun
from workflows.services import workflow_create


@pytest.mark.worker
def test_an_evaluation_runs_on_a_real_worker_once_per_case(
    committed_world: World, worker_queue: str
) -> None:
    access = access_of(committed_world.owner, committed_world.workspace_a)
    with schema_context(committed_world.workspace_a.schema_name):
        dataset = services.dataset_import(
            access=access,
            name="Worker set",
            filename="w.csv",
            data=b"input,expected\nSay hello,\nSay hello again,\nWhat is 2 + 2?,4\n",
        )
        suite = services.suite_create(
            access=access,
            name="Worker suite",
            dataset_id=dataset.pk,
            evaluators_spec=[
                {"kind": "regex", "pattern": "(?i)hello"},
                {"kind": "judge", "model": "offline:demo", "rubric": 'Mentions "hello".'},
            ],
            pass_threshold=Decimal("0.6"),
        )
        agent = agent_create(access=access, name="Worker greeter", model="offline:demo")
        # Committed, so the worker is sent the task; then the same task once more. The solo
        # worker takes tasks in order, so the second result also means the first finished.
        evaluation = services.evaluation_start(access=access, suite_id=suite.pk, agent_id=agent.pk)
        second = run_evaluation.apply_async(args=[evaluation.pk])
        assert second.get(timeout=90) == Evaluation.Status.PASSED
        evaluation.refresh_from_db()
        assert evaluation.status == Evaluation.Status.PASSED
        assert (evaluation.cases_done, evaluation.cases_passed) == (3, 2)
        assert CaseResult.objects.filter(evaluation=evaluation).count() == 3
        # Three answers and three judge calls: nothing was paid for twice.
        assert UsageRecord.objects.filter(agent_id=agent.pk).count() == 6


@pytest.mark.worker
def test_a_workflow_evaluation_runs_its_cases_as_runs_on_a_real_worker(
    committed_world: World, worker_queue: str
) -> None:
    access = access_of(committed_world.owner, committed_world.workspace_a)
    with schema_context(committed_world.workspace_a.schema_name):
        dataset = services.dataset_import(
            access=access,
            name="Flow set",
            filename="f.jsonl",
            data=b'{"input": "Ada"}\n{"input": "Grace"}\n{"input": "{\\"nobody\\": 1}"}\n',
        )
        suite = services.suite_create(
            access=access,
            name="Flow suite",
            dataset_id=dataset.pk,
            evaluators_spec=[{"kind": "regex", "pattern": "Hello"}],
            pass_threshold=Decimal("0.6"),
        )
        workflow = workflow_create(
            access=access,
            name="Greeting flow",
            definition=flow(
                [transform("greet", "Hello {{ input.name }}")],
                [],
                inputs={"name": {"type": "string", "required": True}},
            ),
        )
        evaluation = services.evaluation_start(
            access=access, suite_id=suite.pk, workflow_id=workflow.pk
        )
        # The task comes back until every run ended; poll the row, as the page does.
        for _ in range(600):
            evaluation.refresh_from_db()
            if evaluation.finished:
                break
            run_evaluation.apply_async(args=[-1]).get(timeout=30)  # a no-op round trip
        assert evaluation.status == Evaluation.Status.PASSED
        assert (evaluation.cases_done, evaluation.cases_passed) == (3, 2)
        assert WorkflowRun.objects.filter(workflow=workflow).count() == 2
        assert CaseRun.objects.filter(evaluation=evaluation).count() == 2
