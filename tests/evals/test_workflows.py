"""Evaluating workflow versions: each case is an ordinary run of the version (the ledger and
quota count it), its inputs checked as a run's are, its output and cost and latency judged; an
approval step fails its case instead of waiting; two versions side by side; the release gate
and the listing score for workflows (service, page and API)."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from agents.models import UsageRecord
from core.exceptions import Conflict, ValidationFailed
from evals import services
from evals.models import CaseResult, CaseRun, Evaluation, Suite
from evals.tasks import recover_stalled
from marketplace import services as market
from marketplace.models import Category, ListingVersion
from tenants.models import Membership, Role
from tenants.permissions import Access
from tests.fakes.openai_api import FakeOpenAI
from tests.helpers.personas import World, access_of, key_client, logged_in, make_user
from tests.helpers.workflows import drain, flow, transform
from workflows import services as workflow_services
from workflows.models import RunStatus, Workflow, WorkflowRun

pytestmark = pytest.mark.django_db

GREETER = flow(
    [transform("greet", "Hello {{ input.name }}")],
    [],
    inputs={"name": {"type": "string", "required": True}},
    output={"text": "{{ steps.greet }}"},
)


def _workflow(access: Access, definition: dict[str, Any], name: str = "Greeter flow") -> Workflow:
    return workflow_services.workflow_create(access=access, name=name, definition=definition)


def _suite(
    access: Access,
    lines: list[dict[str, str]],
    specs: list[dict[str, Any]],
    threshold: Decimal = Decimal(1),
) -> int:
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    dataset = services.dataset_import(access=access, name="Cases", filename="c.jsonl", data=data)
    suite = services.suite_create(
        access=access,
        name="Flow suite",
        dataset_id=dataset.pk,
        evaluators_spec=specs,
        pass_threshold=threshold,
    )
    return suite.pk


def settle(evaluation: Evaluation) -> str:
    """What the worker does: a pass of the evaluation, the runs' steps, again until it ends."""
    for _ in range(20):
        status = services.evaluation_execute(evaluation.pk)
        if status != Evaluation.Status.RUNNING:
            assert status is not None
            return status
        drain()
    raise AssertionError("the evaluation did not end")


def _results(evaluation: Evaluation) -> list[CaseResult]:
    return list(CaseResult.objects.filter(evaluation=evaluation).order_by("case__position"))


def test_each_case_is_a_run_whose_output_cost_and_latency_are_judged(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    definition = flow(
        [
            {
                "id": "write",
                "type": "llm",
                "config": {"model": fake_model, "prompt": "{{ input.q }}"},
            }
        ],
        [],
        inputs={"q": {"type": "string", "required": True}},
        output={"answer": "{{ steps.write.text }}"},
    )
    fake_openai.queue(text="Paris", usage={"prompt_tokens": 10, "completion_tokens": 2})
    fake_openai.queue(text="Berlin", usage={"prompt_tokens": 400_000, "completion_tokens": 10})
    workflow = _workflow(owner_access, definition)
    suite_id = _suite(
        owner_access,
        [
            {"input": '{"q": "Capital of France?"}'},
            {"input": "Capital of Germany?"},  # one declared input: the text is its value
            {"input": '{"question": "Capital of Spain?"}'},  # does not fit
        ],
        [
            {"kind": "json_schema", "schema": {"type": "object", "required": ["answer"]}},
            {"kind": "max_cost", "usd": 0.01},
            {"kind": "max_latency", "ms": 600_000},
        ],
        threshold=Decimal("0.3"),
    )
    evaluation = services.evaluation_start(
        access=owner_access, suite_id=suite_id, workflow_id=workflow.pk
    )
    assert (evaluation.target, evaluation.target_name, evaluation.version_number) == (
        "workflow",
        "Greeter flow",
        1,
    )
    # The first pass starts a run per fitting case; a second delivery starts none again.
    assert services.evaluation_execute(evaluation.pk) == Evaluation.Status.RUNNING
    assert services.evaluation_execute(evaluation.pk) == Evaluation.Status.RUNNING
    assert WorkflowRun.objects.filter(workflow=workflow).count() == 2
    assert settle(evaluation) == Evaluation.Status.PASSED  # 1 of 3 meets the threshold 0.3
    evaluation.refresh_from_db()
    assert (evaluation.cases_done, evaluation.cases_passed) == (3, 1)

    france, germany, spain = _results(evaluation)
    assert france.passed, (france.error, france.verdicts)
    assert json.loads(france.output) == {"answer": "Paris"}
    assert france.cost_usd > 0
    run = WorkflowRun.objects.get(pk=france.run_id or 0)
    assert run.status == RunStatus.SUCCEEDED
    assert run.cost_usd == france.cost_usd  # the run's own figures
    # The expensive answer fails the cost threshold, naming it.
    assert not germany.passed
    assert [v["passed"] for v in germany.verdicts] == [True, False, True]
    assert WorkflowRun.objects.get(pk=germany.run_id or 0).inputs == {"q": "Capital of Germany?"}
    # The case whose inputs do not fit names the input, and no run was started for it.
    assert not spain.passed
    assert "q: required (a string)" in spain.error
    assert spain.run_id is None
    assert not CaseRun.objects.filter(case=spain.case).exists()
    # Each model call is in the ledger once; running the finished task again changes nothing.
    assert UsageRecord.objects.count() == 2
    assert services.evaluation_execute(evaluation.pk) == Evaluation.Status.PASSED
    assert WorkflowRun.objects.count() == 2


def test_a_run_that_fails_fails_its_case_with_the_runs_error(owner_access: Access) -> None:
    definition = flow(
        [transform("half", "{{ 1 / input.n }}")],
        [],
        inputs={"n": {"type": "number", "required": True}},
    )
    with schema_context(owner_access.workspace.schema_name):
        workflow = _workflow(owner_access, definition, name="Divider")
        suite_id = _suite(
            owner_access,
            [{"input": "4"}, {"input": "0"}, {"input": "four"}],
            [{"kind": "regex", "pattern": "0.25"}],
        )
        evaluation = services.evaluation_start(
            access=owner_access, suite_id=suite_id, workflow_id=workflow.pk
        )
        settle(evaluation)
        ok, zero, word = _results(evaluation)
        assert WorkflowRun.objects.get(pk=zero.run_id or 0).status == RunStatus.FAILED
    assert ok.passed
    assert not zero.passed
    assert zero.error
    assert "n: must be a number, not a string" in word.error


def test_an_approval_step_fails_its_case_and_cancels_the_run(owner_access: Access) -> None:
    definition = flow(
        [
            transform("draft", "Draft for {{ input.topic }}"),
            {"id": "review", "type": "approval", "config": {"message": "OK?"}},
            transform("publish", "published"),
        ],
        [("draft", "review"), ("review", "publish", "approved")],
        inputs={"topic": {"type": "string", "required": True}},
    )
    with schema_context(owner_access.workspace.schema_name):
        workflow = _workflow(owner_access, definition, name="Reviewed")
        suite_id = _suite(owner_access, [{"input": "news"}], [{"kind": "regex", "pattern": "x"}])
        evaluation = services.evaluation_start(
            access=owner_access, suite_id=suite_id, workflow_id=workflow.pk
        )
        assert settle(evaluation) == Evaluation.Status.FAILED
        (result,) = _results(evaluation)
        run = WorkflowRun.objects.get(pk=result.run_id or 0)
    assert "Step “review” waits for a person's approval" in result.error
    assert run.status == RunStatus.CANCELLED


def test_two_workflow_versions_are_evaluated_and_compared(
    world: World, owner_access: Access, owner_client: Client
) -> None:
    with schema_context(world.workspace_a.schema_name):
        workflow = _workflow(owner_access, GREETER)
        second = dict(GREETER, steps=[transform("greet", "Hi {{ input.name }}")])
        workflow_services.version_save(access=owner_access, workflow=workflow, definition=second)
        suite_id = _suite(
            owner_access,
            [{"input": "Ada", "expected": '{"text": "Hello Ada"}'}],
            [{"kind": "exact"}],
        )
        one = services.evaluation_start(
            access=owner_access, suite_id=suite_id, workflow_id=workflow.pk
        )
        two = services.evaluation_start(
            access=owner_access, suite_id=suite_id, workflow_id=workflow.pk, version_number=2
        )
        settle(one)
        settle(two)
        assert [r.passed for r in _results(one)] == [True]
        assert [r.passed for r in _results(two)] == [False]
    url = reverse("evals_compare", kwargs={"workspace_slug": "alpha"})
    page = owner_client.get(url, {"left": one.pk, "right": two.pk}).content.decode()
    assert "Greeter flow v1" in page
    assert "Greeter flow v2" in page
    assert "Hello Ada" in page
    assert "Hi Ada" in page
    detail = reverse(
        "evals_evaluation", kwargs={"workspace_slug": "alpha", "evaluation_id": one.pk}
    )
    html = owner_client.get(detail).content.decode()
    assert "on workflow Greeter flow v1" in html
    assert f"Run #{_results(one)[0].run_id}" in html


def test_starting_names_what_is_wrong(owner_access: Access) -> None:
    with schema_context(owner_access.workspace.schema_name):
        workflow = _workflow(owner_access, GREETER)
        suite_id = _suite(owner_access, [{"input": "Ada"}], [{"kind": "exact"}])
        with pytest.raises(ValidationFailed) as neither:
            services.evaluation_start(access=owner_access, suite_id=suite_id)
        assert "agent" in neither.value.fields
        with pytest.raises(ValidationFailed) as missing:
            services.evaluation_start(
                access=owner_access, suite_id=suite_id, workflow_id=workflow.pk, version_number=9
            )
        assert "version" in missing.value.fields


# -- pages and API ----------------------------------------------------------------------------


def test_the_page_starts_a_workflow_evaluation(world: World, owner_client: Client) -> None:
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        workflow = _workflow(access, GREETER)
        suite_id = _suite(access, [{"input": "Ada"}], [{"kind": "exact"}])
    index = owner_client.get(reverse("evals", kwargs={"workspace_slug": "alpha"})).content
    assert b"or a workflow" in index
    assert b"Greeter flow" in index
    url = reverse("evals_start", kwargs={"workspace_slug": "alpha"})
    both = owner_client.post(url, {"suite": suite_id, "agent": "", "workflow": ""})
    assert both.status_code == 400
    assert "Choose an agent or a workflow." in both.content.decode()
    started = owner_client.post(url, {"suite": suite_id, "workflow": workflow.pk})
    assert started.status_code == 302
    with schema_context(world.workspace_a.schema_name):
        evaluation = Evaluation.objects.get()
    assert evaluation.workflow_id == workflow.pk


def test_a_viewer_cannot_start_a_workflow_evaluation(world: World) -> None:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    url = reverse("evals_start", kwargs={"workspace_slug": "alpha"})
    assert logged_in(viewer).post(url, {"suite": 1, "workflow": 1}).status_code == 403
    api = APIClient()
    api.force_authenticate(viewer)
    start = api.post(
        "/api/v1/evals/evaluations/",
        {"suite": 1, "workflow": 1},
        format="json",
        HTTP_X_WORKSPACE="alpha",
    )
    assert start.status_code == 403


def test_outsiders_and_anonymous_cannot_start_one(world: World, outsider_client: Client) -> None:
    url = reverse("evals_start", kwargs={"workspace_slug": "alpha"})
    assert outsider_client.post(url, {"suite": 1, "workflow": 1}).status_code == 404
    assert Client().post(url, {"suite": 1, "workflow": 1}).status_code == 302
    outsider = APIClient()
    outsider.force_authenticate(world.outsider)
    body = {"suite": 1, "workflow": 1}
    started = outsider.post(
        "/api/v1/evals/evaluations/", body, format="json", HTTP_X_WORKSPACE="alpha"
    )
    assert started.status_code == 404
    assert APIClient().post("/api/v1/evals/evaluations/", body, format="json").status_code in (
        401,
        403,
    )


def test_the_api_evaluates_a_workflow_version(world: World) -> None:
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        workflow = _workflow(access, GREETER)
        suite_id = _suite(access, [{"input": "Ada"}], [{"kind": "regex", "pattern": "Hello"}])
    client = key_client(world, ["build", "run", "workspace.view"])
    both = client.post(
        "/api/v1/evals/evaluations/",
        {"suite": suite_id, "agent": 1, "workflow": workflow.pk},
        format="json",
    )
    assert both.status_code == 400
    assert "agent" in both.json()["error"]["fields"]
    started = client.post(
        "/api/v1/evals/evaluations/", {"suite": suite_id, "workflow": workflow.pk}, format="json"
    )
    assert started.status_code == 202, started.content
    body = started.json()
    assert (body["target"], body["workflow_id"], body["version_number"]) == (
        "workflow",
        workflow.pk,
        1,
    )
    with schema_context(world.workspace_a.schema_name):
        settle(Evaluation.objects.get(pk=body["id"]))
    results = client.get(started["Location"] + "results/").json()["results"]
    assert results[0]["passed"] is True
    assert results[0]["run_id"] is not None


# -- the release gate for workflows -----------------------------------------------------------


def _publish_body(workflow_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "workflow",
        "source_id": workflow_id,
        "title": "Greeter flow",
        "summary": "Greets.",
        "category": "support",
        **extra,
    }


def test_publishing_a_workflow_waits_for_a_passing_evaluation(
    world: World, owner_access: Access, owner_client: Client
) -> None:
    Category.objects.create(slug="support", name="Support")
    schema = world.workspace_a.schema_name
    with schema_context(schema):
        workflow = _workflow(owner_access, GREETER)
        strict = _suite(owner_access, [{"input": "Ada"}], [{"kind": "regex", "pattern": "Bye"}])
        services.gate_policy_set(access=owner_access, require_for_publish=True)
    api = key_client(world, ["build", "run", "workspace.view"])
    refused = api.post("/api/v1/marketplace/listings/", _publish_body(workflow.pk), format="json")
    assert refused.status_code == 409
    assert "Greeter flow v1 has not been evaluated yet" in refused.json()["error"]["message"]
    with schema_context(schema):
        failing = services.evaluation_start(
            access=owner_access, suite_id=strict, workflow_id=workflow.pk
        )
        settle(failing)
    page = owner_client.post(
        reverse("marketplace_publish", kwargs={"workspace_slug": "alpha"}),
        {
            "source": f"workflow:{workflow.pk}",
            "title": "Greeter flow",
            "summary": "Greets.",
            "category": "support",
            "pricing": "free",
            "currency": "usd",
        },
    )
    assert page.status_code == 409
    assert (
        f"evaluation #{failing.pk} (“Flow suite”) of Greeter flow v1 failed with 0/1 cases "
        "passing" in page.content.decode()
    )
    assert not ListingVersion.objects.exists()
    with schema_context(schema):
        lenient = services.suite_create(
            access=owner_access,
            name="Lenient",
            dataset_id=failing.suite.dataset_id,
            evaluators_spec=[{"kind": "regex", "pattern": "Hello"}],
        )
        passing = services.evaluation_start(
            access=owner_access, suite_id=lenient.pk, workflow_id=workflow.pk
        )
        settle(passing)
    published = api.post(
        "/api/v1/marketplace/listings/",
        _publish_body(workflow.pk, show_evaluation_score=True),
        format="json",
    )
    assert published.status_code == 201, published.content
    version = ListingVersion.objects.get()
    assert (version.evaluation_score, version.evaluation_cases) == (Decimal(1), 1)


def test_the_gate_follows_the_active_version(owner_access: Access) -> None:
    """A passing evaluation of v1 does not let v2 through once v2 is the active version."""
    Category.objects.create(slug="support", name="Support")
    with schema_context(owner_access.workspace.schema_name):
        workflow = _workflow(owner_access, GREETER)
        suite_id = _suite(owner_access, [{"input": "Ada"}], [{"kind": "regex", "pattern": "H"}])
        settle(
            services.evaluation_start(
                access=owner_access, suite_id=suite_id, workflow_id=workflow.pk
            )
        )
        services.gate_policy_set(access=owner_access, require_for_publish=True)
        second = dict(GREETER, steps=[transform("greet", "Hi {{ input.name }}")])
        workflow_services.version_save(
            access=owner_access, workflow=workflow, definition=second, publish=True
        )
    with pytest.raises(Conflict, match="Greeter flow v2 has not been evaluated yet"):
        market.listing_publish(
            access=owner_access,
            kind="workflow",
            source_id=workflow.pk,
            title="Greeter flow",
            summary="Greets.",
            category_slug="support",
        )


# -- one pass and one chain at a time; evaluations nobody works on are sent again -------------


def _greeter_evaluation(access: Access, name: str = "Greeter flow") -> Evaluation:
    workflow = _workflow(access, GREETER, name=name)
    suite = Suite.objects.first()
    suite_id = (
        suite.pk
        if suite is not None
        else _suite(access, [{"input": "Ada"}], [{"kind": "regex", "pattern": "Hello"}])
    )
    return services.evaluation_start(access=access, suite_id=suite_id, workflow_id=workflow.pk)


def test_a_second_delivery_while_a_pass_runs_does_nothing(owner_access: Access) -> None:
    with schema_context(owner_access.workspace.schema_name):
        evaluation = _greeter_evaluation(owner_access)
        key = services.evaluation_lock_key(evaluation.pk)
        other = connections.create_connection("default")  # the worker doing the first pass
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(%s)", [key])
            assert services.evaluation_execute(evaluation.pk) is None
            assert not CaseRun.objects.filter(evaluation=evaluation).exists()
            with other.cursor() as cursor:  # that pass ends
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        finally:
            other.close()
        assert settle(evaluation) == Evaluation.Status.PASSED
        assert WorkflowRun.objects.count() == 1


def test_an_older_chain_of_passes_ends_when_a_newer_one_took_over(
    owner_access: Access, django_capture_on_commit_callbacks: Any
) -> None:
    with schema_context(owner_access.workspace.schema_name):
        evaluation = _greeter_evaluation(owner_access)
        with django_capture_on_commit_callbacks(execute=True):  # the pass sends the next one
            assert services.evaluation_execute(evaluation.pk) == Evaluation.Status.RUNNING
        first = services.evaluation_chain(evaluation.pk)
        assert first is not None
        # A redelivered first message does a pass and takes the chain over ...
        with django_capture_on_commit_callbacks(execute=True):
            assert services.evaluation_execute(evaluation.pk) == Evaluation.Status.RUNNING
        newer = services.evaluation_chain(evaluation.pk)
        assert newer not in (None, first)
        # ... so the older chain's next message does nothing and sends nothing.
        with django_capture_on_commit_callbacks(execute=False) as sent:
            assert services.evaluation_execute(evaluation.pk, first) is None
        assert sent == []
        drain()
        assert services.evaluation_execute(evaluation.pk, newer) == Evaluation.Status.PASSED
        assert services.evaluation_chain(evaluation.pk) is None
        assert WorkflowRun.objects.count() == 1


def test_an_evaluation_nobody_works_on_is_sent_again(
    owner_access: Access, django_capture_on_commit_callbacks: Any
) -> None:
    with schema_context(owner_access.workspace.schema_name):
        polled = _greeter_evaluation(owner_access)
        with django_capture_on_commit_callbacks(execute=True):  # its chain goes on
            services.evaluation_execute(polled.pk)
        lost = _greeter_evaluation(owner_access, name="Other flow")
        services.evaluation_execute(lost.pk)  # its re-send was never published
        assert services.evaluations_recover() == []  # too recent to tell
        long_ago = timezone.now() - services.STALLED_AFTER - timedelta(seconds=1)
        Evaluation.objects.filter(pk__in=[polled.pk, lost.pk]).update(created_at=long_ago)
    # the beat task, every minute, in every workspace
    assert settings.CELERY_BEAT_SCHEDULE["evals-recover-stalled"]["task"] == "evals.recover_stalled"
    assert recover_stalled() == 1
    with schema_context(owner_access.workspace.schema_name):
        assert services.evaluations_recover() == []  # not flooded: once a minute at most
        drain()
        assert services.evaluation_execute(lost.pk) == Evaluation.Status.PASSED  # the worker
