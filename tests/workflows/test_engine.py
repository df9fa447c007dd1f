"""The run engine executed inline (the worker's code path, called synchronously): chains,
branches, routers, joins, maps, retries, timeouts, cancel, approvals, webhook waits,
sub-workflows, resume, re-run and duplicate deliveries. Delivery through a real Celery worker
is in test_engine_worker.py."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from agents.gateway import replay
from agents.models import UsageRecord
from core.exceptions import Conflict, NotFound, PermissionDenied, ValidationFailed
from tenants.permissions import Access
from tests.fakes import FakeOpenAI
from tests.helpers.personas import access_of
from tests.helpers.workflows import drain, flow, make_workflow, start, step, transform
from workflows import engine, runs
from workflows.engine.execute import _advisory_key
from workflows.models import RecordedCall, StepRun, StepStatus, WorkflowRun

pytestmark = pytest.mark.django_db


def statuses(run: WorkflowRun) -> dict[str, str]:
    return {s.node_id: s.status for s in run.steps.filter(parent__isnull=True)}


# --- starting -------------------------------------------------------------------------------


def test_start_writes_every_step_and_queues_only_the_entry(
    owner_access: Access, in_alpha: None
) -> None:
    run = start(
        flow([transform("a", 1), transform("b", 2), transform("c", 3)], [("a", "b"), ("b", "c")]),
        access=owner_access,
    )
    assert run.status == "queued"
    assert run.created_by_id == owner_access.user.pk
    assert statuses(run) == {"a": "queued", "b": "pending", "c": "pending"}


def test_inputs_are_checked_and_defaults_applied(in_alpha: None) -> None:
    definition = flow(
        [transform("a", "{{ input.ticket }}")],
        [],
        inputs={
            "ticket": {"type": "string", "required": True},
            "count": {"type": "integer"},
            "tags": {"type": "array", "default": ["new"]},
        },
    )
    with pytest.raises(ValidationFailed) as missing:
        start(definition, {})
    assert missing.value.fields == {"inputs": ["ticket: required (a string)"]}
    with pytest.raises(ValidationFailed) as wrong:
        start(definition, {"ticket": 5, "count": "three"})
    assert wrong.value.fields["inputs"] == [
        "ticket: must be a string, not a integer",
        "count: must be a integer, not a string",
    ]
    run = start(definition, {"ticket": "Broken login", "count": 2.0})
    assert run.inputs == {"ticket": "Broken login", "count": 2, "tags": ["new"]}


def test_a_viewer_cannot_start_a_run(world, in_alpha: None) -> None:
    from tenants.models import Role

    access = Access(workspace=world.workspace_a, user=world.member, role=Role.VIEWER)
    with pytest.raises(PermissionDenied, match="run"):
        start(flow([transform("a", 1)], []), access=access)


# --- chains, branches, routers ---------------------------------------------------------------


def test_a_linear_chain_runs_in_order_and_computes_the_output(in_alpha: None) -> None:
    run = start(
        flow(
            [
                transform("greet", "Hello {{ input.name }}"),
                transform("shout", "{{ upper(steps.greet) }}!"),
                transform("count", "{{ len(steps.shout) }}"),
            ],
            [("greet", "shout"), ("shout", "count")],
            output={"text": "{{ steps.shout }}", "length": "{{ steps.count }}"},
        ),
        {"name": "Ada"},
    )
    assert drain() == ["greet", "shout", "count"]
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.output == {"text": "HELLO ADA!", "length": 10}
    assert run.started_at is not None
    assert run.finished_at is not None
    shout = step(run, "shout")
    assert shout.output == "HELLO ADA!"
    assert shout.attempt == 1
    assert shout.revision >= 3  # queued, running, succeeded
    assert run.revision >= 2


def test_without_an_output_mapping_the_run_returns_its_sinks(in_alpha: None) -> None:
    run = start(
        flow(
            [transform("a", 1), transform("b", "x"), transform("c", "y")], [("a", "b"), ("a", "c")]
        )
    )
    drain()
    run.refresh_from_db()
    assert run.output == {"b": "x", "c": "y"}


def test_condition_takes_one_branch_and_skips_everything_only_the_other_reaches(
    in_alpha: None,
) -> None:
    definition = flow(
        [
            {"id": "check", "type": "condition", "config": {"expression": "input.amount > 100"}},
            transform("review", "manual review"),
            transform("notify", "notify {{ steps.review }}"),
            transform("auto", "auto-approved"),
            transform("done", "{{ coalesce(steps.notify, steps.auto) }}"),
        ],
        [
            ("check", "review", "true"),
            ("review", "notify"),
            ("check", "auto", "false"),
            ("notify", "done"),
            ("auto", "done"),
        ],
        output={"result": "{{ steps.done }}"},
    )
    small = start(definition, {"amount": 20})
    drain()
    small.refresh_from_db()
    assert statuses(small) == {
        "check": "succeeded",
        "review": "skipped",
        "notify": "skipped",
        "auto": "succeeded",
        "done": "succeeded",
    }
    assert step(small, "check").branch == "false"
    assert small.output == {"result": "auto-approved"}

    big = start(definition, {"amount": 500})
    drain()
    big.refresh_from_db()
    assert statuses(big)["auto"] == "skipped"
    assert statuses(big)["notify"] == "succeeded"
    assert big.output == {"result": "notify manual review"}


ROUTES = [
    {"name": "billing", "description": "Invoices, refunds, payments"},
    {"name": "tech", "description": "Bugs and outages"},
    {"name": "other"},
]


def _router_flow(router: dict[str, Any]) -> dict:
    return flow(
        [
            {"id": "route", "type": "router", "config": {"routes": ROUTES, **router}},
            transform("billing", "to finance"),
            transform("tech", "to engineering"),
            transform("other", "to the inbox"),
        ],
        [("route", "billing", "billing"), ("route", "tech", "tech"), ("route", "other", "other")],
    )


def test_router_by_expression_runs_only_the_chosen_route(in_alpha: None) -> None:
    run = start(
        _router_flow(
            {
                "mode": "expression",
                "expression": "'tech' if contains(input.text, 'error') else 'other'",
            }
        ),
        {"text": "I get an Error 500"},
    )
    drain()
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert statuses(run) == {
        "route": "succeeded",
        "billing": "skipped",
        "tech": "succeeded",
        "other": "skipped",
    }
    assert step(run, "route").output == {"route": "tech"}


def test_router_expression_naming_no_route_fails_the_run_naming_it(in_alpha: None) -> None:
    run = start(_router_flow({"mode": "expression", "expression": "'sales'"}))
    drain()
    run.refresh_from_db()
    assert run.status == "failed"
    assert "'sales', which is not a route (billing, tech, other)" in run.error


def test_router_by_llm_asks_the_model_through_the_gateway(
    fake_model: str, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue(
        text='{"route": "billing"}', usage={"prompt_tokens": 40, "completion_tokens": 5}
    )
    run = start(
        _router_flow({"mode": "llm", "model": fake_model, "prompt": "{{ input.text }}"}),
        {"text": "Where is my refund?"},
    )
    drain()
    run.refresh_from_db()
    assert statuses(run)["billing"] == "succeeded"
    assert statuses(run)["tech"] == "skipped"
    request = fake_openai.last_request.body
    assert request["messages"][-1]["content"] == "Where is my refund?"
    assert "billing: Invoices, refunds, payments" in request["messages"][0]["content"]
    route = step(run, "route")
    assert (route.input_tokens, route.output_tokens) == (40, 5)
    assert route.cost_usd == Decimal("0.000195")  # 40 × $3/M + 5 × $15/M
    assert run.cost_usd == route.cost_usd
    assert UsageRecord.objects.filter(outcome="ok").count() == 1


def test_router_by_llm_on_the_offline_provider(in_alpha: None) -> None:
    run = start(
        _router_flow({"mode": "llm", "model": "offline:demo", "prompt": "{{ input.text }}"}),
        {"text": "hi"},
    )
    drain()
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    chosen = step(run, "route").output["route"]
    assert statuses(run)[chosen] == "succeeded"
    assert sorted(statuses(run).values()).count("skipped") == 2


# --- parallel and joins ----------------------------------------------------------------------


def _fan_out(mode: str, **join: Any) -> dict:
    return flow(
        [
            {"id": "split", "type": "parallel", "config": {}},
            transform("a", "A"),
            transform("b", "B"),
            transform("c", "C"),
            {"id": "merge", "type": "join", "config": {"mode": mode, **join}},
            transform("after", "{{ keys(steps.merge) }}"),
        ],
        [
            ("split", "a"),
            ("split", "b"),
            ("split", "c"),
            ("a", "merge"),
            ("b", "merge"),
            ("c", "merge"),
            ("merge", "after"),
        ],
    )


def test_parallel_starts_every_branch_and_join_all_waits_for_them(in_alpha: None) -> None:
    run = start(_fan_out("all"))
    seen: list[dict[str, str]] = []
    drain(after_each=lambda s: seen.append(statuses(run)))
    assert seen[0] == {
        "split": "succeeded",
        "a": "queued",
        "b": "queued",
        "c": "queued",
        "merge": "pending",
        "after": "pending",
    }
    assert seen[2]["merge"] == "pending"  # two of three branches done
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert step(run, "merge").output == {"a": "A", "b": "B", "c": "C"}
    assert step(run, "after").output == ["a", "b", "c"]


def test_join_first_fires_on_the_first_branch(in_alpha: None) -> None:
    run = start(_fan_out("first"))
    seen: list[dict[str, str]] = []
    drain(after_each=lambda s: seen.append(statuses(run)))
    after_a = seen[1]  # split, then a
    assert after_a["merge"] == "queued"
    assert after_a["b"] == after_a["c"] == "queued"
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert step(run, "merge").output == {"a": "A"}
    assert set(statuses(run).values()) == {"succeeded"}  # b and c still ran


def test_join_n_fires_on_the_first_n_branches(in_alpha: None) -> None:
    run = start(_fan_out("n", n=2))
    seen: list[dict[str, str]] = []
    drain(after_each=lambda s: seen.append(statuses(run)))
    assert seen[1]["merge"] == "pending"  # one branch in
    assert seen[2]["merge"] == "queued"  # two branches in
    assert seen[2]["c"] == "queued"
    run.refresh_from_db()
    assert step(run, "merge").output == {"a": "A", "b": "B"}


def test_join_all_runs_with_the_branches_that_were_not_skipped(in_alpha: None) -> None:
    run = start(
        flow(
            [
                {"id": "check", "type": "condition", "config": {"expression": "1 < 2"}},
                transform("yes", "Y"),
                transform("no", "N"),
                {"id": "merge", "type": "join", "config": {"mode": "all"}},
            ],
            [("check", "yes", "true"), ("check", "no", "false"), ("yes", "merge"), ("no", "merge")],
        )
    )
    drain()
    run.refresh_from_db()
    assert statuses(run)["no"] == "skipped"
    assert step(run, "merge").output == {"yes": "Y"}


# --- map -------------------------------------------------------------------------------------


def test_map_runs_every_item_never_more_than_its_concurrency_at_once(in_alpha: None) -> None:
    run = start(
        flow(
            [
                transform("list", "{{ input.words }}"),
                {
                    "id": "each",
                    "type": "map",
                    "config": {
                        "items": "steps.list",
                        "concurrency": 2,
                        "node": {
                            "type": "transform",
                            "config": {"value": "{{ index }}:{{ upper(item) }}"},
                        },
                    },
                },
                transform("joined", "{{ join(steps.each, ' ') }}"),
            ],
            [("list", "each"), ("each", "joined")],
        ),
        {"words": ["a", "b", "c", "d", "e"]},
    )
    most = 0

    def check(_: StepRun) -> None:
        nonlocal most
        active = StepRun.objects.filter(
            run=run, parent__isnull=False, status__in=("queued", "running")
        ).count()
        assert active <= 2
        most = max(most, active)

    order = drain(after_each=check)
    assert most == 2
    assert order == [
        "list",
        "each",
        "each[0]",
        "each[1]",
        "each[2]",
        "each[3]",
        "each[4]",
        "joined",
    ]
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert step(run, "each").output == ["0:A", "1:B", "2:C", "3:D", "4:E"]
    assert step(run, "joined").output == "0:A 1:B 2:C 3:D 4:E"
    items = StepRun.objects.filter(parent=step(run, "each")).order_by("item_index")
    assert [i.input for i in items] == ["a", "b", "c", "d", "e"]


def test_a_failing_map_item_fails_the_map_and_the_run(in_alpha: None) -> None:
    run = start(
        flow(
            [
                {
                    "id": "each",
                    "type": "map",
                    "config": {
                        "items": "input.numbers",
                        "concurrency": 1,
                        "node": {"type": "transform", "config": {"value": "{{ 10 / item }}"}},
                    },
                }
            ],
            [],
        ),
        {"numbers": [5, 0, 2]},
    )
    drain()
    run.refresh_from_db()
    assert run.status == "failed"
    each = step(run, "each")
    assert each.status == "failed"
    assert each.error.startswith("item 1 failed:")
    items = {i.item_index: i.status for i in StepRun.objects.filter(parent=each)}
    assert items == {0: "succeeded", 1: "failed", 2: "cancelled"}


def test_an_empty_map_succeeds_with_an_empty_list(in_alpha: None) -> None:
    run = start(
        flow(
            [
                {
                    "id": "each",
                    "type": "map",
                    "config": {
                        "items": "[]",
                        "node": {"type": "transform", "config": {"value": 1}},
                    },
                }
            ],
            [],
        )
    )
    drain()
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert run.output == {"each": []}


# --- retries, timeouts, failures -------------------------------------------------------------


def test_a_failed_attempt_is_retried_after_backoff_then_succeeds(
    fake_model: str, fake_openai: FakeOpenAI, settings: Any
) -> None:
    for _ in range(settings.GATEWAY_MAX_ATTEMPTS):
        fake_openai.queue_error(500)
    fake_openai.queue(text="Summary", usage={"prompt_tokens": 10, "completion_tokens": 2})
    run = start(
        flow(
            [
                {
                    "id": "summarise",
                    "type": "llm",
                    "config": {"model": fake_model, "prompt": "Summarise {{ input.text }}"},
                    "retry": {"max_attempts": 3, "backoff_seconds": 4},
                }
            ],
            [],
        ),
        {"text": "the report"},
    )
    summarise = step(run, "summarise")
    engine.step_execute(summarise.pk)
    summarise.refresh_from_db()
    assert summarise.status == "queued"
    assert summarise.attempt == 1
    assert "No model could answer" in summarise.error
    waited = (summarise.next_attempt_at - summarise.queued_at).total_seconds()
    assert 4 <= waited <= 4.5  # backoff × 2^(attempt-1), plus at most 10 % jitter

    drain()
    run.refresh_from_db()
    summarise.refresh_from_db()
    assert run.status == "succeeded"
    assert summarise.attempt == 2
    assert summarise.error == ""
    assert summarise.output == {"text": "Summary", "data": None}


def test_backoff_doubles_per_attempt_and_the_last_failure_fails_the_run(in_alpha: None) -> None:
    run = start(
        flow(
            [
                {
                    "id": "calc",
                    "type": "tool",
                    "config": {"tool": "calculator", "arguments": {"expression": "1 / 0"}},
                    "retry": {"max_attempts": 3, "backoff_seconds": 10},
                },
                transform("next", 1),
            ],
            [("calc", "next")],
        )
    )
    calc = step(run, "calc")
    waits = []
    for _ in range(3):
        engine.step_execute(calc.pk)
        calc.refresh_from_db()
        if calc.next_attempt_at:
            waits.append((calc.next_attempt_at - calc.queued_at).total_seconds())
    assert [round(w, -1) for w in waits] == [10, 20]
    run.refresh_from_db()
    assert calc.status == "failed"
    assert calc.attempt == 3
    assert run.status == "failed"
    assert run.error.startswith("calc: calculator:")
    assert statuses(run)["next"] == "pending"  # never reached; a resume may still run it


def test_a_step_over_its_timeout_fails_as_timed_out(
    fake_model: str, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue_delay(5, text="too late")
    run = start(
        flow(
            [
                {
                    "id": "slow",
                    "type": "llm",
                    "config": {"model": fake_model, "prompt": "Take your time"},
                    "timeout_seconds": 1,
                }
            ],
            [],
        )
    )
    drain()
    run.refresh_from_db()
    slow = step(run, "slow")
    assert slow.status == "failed"
    assert slow.error == "timed out after 1 s"
    assert run.status == "failed"
    assert run.error == "slow: timed out after 1 s"
    assert connection.is_usable()


def test_a_failure_lets_running_branches_finish_but_starts_nothing_new(in_alpha: None) -> None:
    run = start(
        flow(
            [
                {"id": "split", "type": "parallel", "config": {}},
                {"id": "bad", "type": "transform", "config": {"value": "{{ 1 / 0 }}"}},
                transform("good", "ok"),
                transform("after_good", "later"),
            ],
            [("split", "bad"), ("split", "good"), ("good", "after_good")],
        )
    )
    split = step(run, "split")
    engine.step_execute(split.pk)
    engine.step_execute(step(run, "bad").pk)  # fails while "good" is queued
    run.refresh_from_db()
    assert run.status == "failed"
    assert statuses(run) == {
        "split": "succeeded",
        "bad": "failed",
        "good": "cancelled",
        "after_good": "pending",
    }
    assert "division by zero" in run.error


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_stops_what_has_not_started(owner_access: Access, in_alpha: None) -> None:
    run = start(
        flow([transform("a", 1), transform("b", 2), transform("c", 3)], [("a", "b"), ("b", "c")])
    )
    engine.step_execute(step(run, "a").pk)
    runs.run_cancel(access=owner_access, run=run)
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.finished_at is not None
    assert run.error == f"Cancelled by {owner_access.user.email}."
    assert statuses(run) == {"a": "succeeded", "b": "cancelled", "c": "cancelled"}
    assert drain() == []
    assert engine.step_execute(step(run, "b").pk) == "ignored"
    with pytest.raises(Conflict):
        runs.run_cancel(access=owner_access, run=run)


# --- approvals -------------------------------------------------------------------------------


def _approval_flow(*, with_rejected_edge: bool, approvers: str = "members") -> dict:
    edges = [("review", "publish", "approved")]
    steps = [
        transform("draft", "Draft for {{ input.topic }}"),
        {
            "id": "review",
            "type": "approval",
            "config": {"message": "Publish {{ steps.draft }}?", "approvers": approvers},
        },
        transform("publish", "published"),
    ]
    if with_rejected_edge:
        steps.append(transform("archive", "archived"))
        edges.append(("review", "archive", "rejected"))
    return flow(steps, [("draft", "review"), *edges])


def test_approval_waits_then_approve_continues_the_approved_branch(world, in_alpha: None) -> None:
    run = start(_approval_flow(with_rejected_edge=True), {"topic": "pricing"})
    drain()
    run.refresh_from_db()
    review = step(run, "review")
    assert review.status == "waiting"
    assert run.status == "waiting"
    assert review.input == {"message": "Publish Draft for pricing?", "approvers": "members"}
    assert review.resume_token

    member = access_of(world.member, world.workspace_a)
    runs.approval_decide(access=member, step=review, approved=True, comment="Ship it")
    drain()
    run.refresh_from_db()
    review.refresh_from_db()
    assert run.status == "succeeded"
    assert review.output == {
        "approved": True,
        "comment": "Ship it",
        "decided_by": world.member.email,
    }
    assert review.decided_by_id == world.member.pk
    assert review.branch == "approved"
    assert statuses(run)["archive"] == "skipped"
    with pytest.raises(Conflict, match="not waiting for a decision"):
        runs.approval_decide(access=member, step=review, approved=False, comment="")


def test_rejection_with_a_rejected_edge_takes_it(owner_access: Access, in_alpha: None) -> None:
    run = start(_approval_flow(with_rejected_edge=True), {"topic": "x"})
    drain()
    runs.approval_decide(
        access=owner_access, step=step(run, "review"), approved=False, comment="No"
    )
    drain()
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert statuses(run)["publish"] == "skipped"
    assert statuses(run)["archive"] == "succeeded"


def test_rejection_without_a_rejected_edge_fails_the_run_with_the_comment(
    owner_access: Access, in_alpha: None
) -> None:
    run = start(_approval_flow(with_rejected_edge=False), {"topic": "x"})
    drain()
    runs.approval_decide(
        access=owner_access, step=step(run, "review"), approved=False, comment="Numbers are wrong"
    )
    run.refresh_from_db()
    assert run.status == "failed"
    assert "Numbers are wrong" in run.error
    assert step(run, "review").status == "failed"  # a resume asks again
    assert statuses(run)["publish"] == "pending"


def test_admin_approvals_refuse_members(world, in_alpha: None) -> None:
    run = start(_approval_flow(with_rejected_edge=False, approvers="admins"), {"topic": "x"})
    drain()
    member = access_of(world.member, world.workspace_a)
    with pytest.raises(PermissionDenied, match=r"workspace\.update"):
        runs.approval_decide(access=member, step=step(run, "review"), approved=True, comment="")
    assert step(run, "review").status == "waiting"


# --- webhook wait ----------------------------------------------------------------------------


def _webhook_flow(**config: Any) -> dict:
    return flow(
        [
            {"id": "wait", "type": "webhook_wait", "config": config},
            transform("use", "{{ steps.wait.status }}"),
        ],
        [("wait", "use")],
    )


def test_webhook_wait_resumes_with_the_posted_body(in_alpha: None) -> None:
    run = start(_webhook_flow(timeout_seconds=3600))
    drain()
    wait = step(run, "wait")
    assert wait.status == "waiting"
    assert wait.resume_token
    assert wait.lease_until is not None  # when it will time out
    resumed = runs.webhook_wait_resume(token=wait.resume_token, payload={"status": "paid"})
    assert resumed.pk == wait.pk
    assert resumed.output == {"status": "paid"}
    drain()
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert step(run, "use").output == "paid"
    with pytest.raises(NotFound):
        runs.webhook_wait_resume(token=wait.resume_token, payload={})
    with pytest.raises(NotFound):
        runs.webhook_wait_resume(token="nope", payload={})


def test_a_webhook_wait_past_its_timeout_fails(in_alpha: None) -> None:
    run = start(_webhook_flow(timeout_seconds=60))
    drain()
    wait = step(run, "wait")
    StepRun.objects.filter(pk=wait.pk).update(
        lease_until=timezone.now() - timezone.timedelta(seconds=1)
    )
    assert engine.webhook_expire(wait.pk)
    run.refresh_from_db()
    assert run.status == "failed"
    assert "No webhook arrived within 60 s" in run.error


# --- sub-workflows ---------------------------------------------------------------------------


def test_sub_workflow_runs_a_child_and_uses_its_output(in_alpha: None) -> None:
    make_workflow(
        flow(
            [transform("double", "{{ input.n * 2 }}")],
            [],
            inputs={"n": {"type": "integer", "required": True}},
            output={"result": "{{ steps.double }}"},
        ),
        name="Doubler",
    )
    run = start(
        flow(
            [
                {
                    "id": "child",
                    "type": "sub_workflow",
                    "config": {"workflow": "Doubler", "inputs": {"n": "{{ input.x }}"}},
                },
                transform("plus_one", "{{ steps.child.result + 1 }}"),
            ],
            [("child", "plus_one")],
        ),
        {"x": 20},
    )
    drain()
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    child_step = step(run, "child")
    child = WorkflowRun.objects.get(parent_step=child_step)
    assert child.trigger == "subworkflow"
    assert child.inputs == {"n": 20}
    assert child.status == "succeeded"
    assert child_step.output == {"result": 40}
    assert step(run, "plus_one").output == 41


def test_sub_workflow_with_bad_inputs_fails_naming_them(in_alpha: None) -> None:
    make_workflow(
        flow([transform("a", 1)], [], inputs={"n": {"type": "integer", "required": True}}),
        name="Needs n",
    )
    run = start(
        flow([{"id": "child", "type": "sub_workflow", "config": {"workflow": "Needs n"}}], [])
    )
    drain()
    run.refresh_from_db()
    assert run.status == "failed"
    assert "config.inputs: n: required" in run.error


def test_cancelling_a_parent_cancels_its_child_run(owner_access: Access, in_alpha: None) -> None:
    make_workflow(
        flow([{"id": "hold", "type": "approval", "config": {"message": "ok?"}}], []), name="Held"
    )
    run = start(flow([{"id": "child", "type": "sub_workflow", "config": {"workflow": "Held"}}], []))
    drain()
    child = WorkflowRun.objects.get(parent_step=step(run, "child"))
    assert child.status == "waiting"
    # After commit the engine cancels children; run that part here as the commit hook would.
    engine.run_cancel_internal(run.pk, "stop")
    engine.run_cancel_internal(child.pk, "The parent run stopped.")
    child.refresh_from_db()
    assert child.status == "cancelled"


# --- retry, resume, re-run -------------------------------------------------------------------


def test_resume_retries_failed_steps_without_rerunning_or_repaying_succeeded_ones(
    fake_model: str, fake_openai: FakeOpenAI, owner_access: Access, settings: Any
) -> None:
    fake_openai.queue(text="Outline", usage={"prompt_tokens": 10, "completion_tokens": 3})
    for _ in range(settings.GATEWAY_MAX_ATTEMPTS):
        fake_openai.queue_error(500)
    run = start(
        flow(
            [
                {
                    "id": "outline",
                    "type": "llm",
                    "config": {"model": fake_model, "prompt": "Outline"},
                },
                {
                    "id": "draft",
                    "type": "llm",
                    "config": {"model": fake_model, "prompt": "Draft {{ steps.outline.text }}"},
                },
            ],
            [("outline", "draft")],
            output={"text": "{{ steps.draft.text }}"},
        )
    )
    drain()
    run.refresh_from_db()
    assert run.status == "failed"
    calls_before = len(fake_openai.requests)
    ok_rows_before = UsageRecord.objects.filter(outcome="ok").count()
    assert ok_rows_before == 1

    fake_openai.queue(text="Draft", usage={"prompt_tokens": 12, "completion_tokens": 4})
    runs.run_resume(access=owner_access, run=run)
    run.refresh_from_db()
    assert run.status == "running"
    assert run.finished_at is None
    drain()
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert run.output == {"text": "Draft"}
    assert len(fake_openai.requests) == calls_before + 1  # only "draft" asked again
    assert fake_openai.last_request.body["messages"][-1]["content"] == "Draft Outline"
    assert UsageRecord.objects.filter(outcome="ok").count() == 2
    assert step(run, "outline").attempt == 1
    assert step(run, "draft").attempt == 2
    with pytest.raises(Conflict):  # it succeeded: nothing to resume
        runs.run_resume(access=owner_access, run=run)


def test_step_retry_gives_a_failed_step_one_more_attempt(
    owner_access: Access, in_alpha: None
) -> None:
    run = start(
        flow(
            [{"id": "pick", "type": "transform", "config": {"value": "{{ input.items[0] + 1 }}"}}],
            [],
        ),
        {"items": ["x"]},
    )
    ok = start(flow([transform("a", 1)], []))
    drain()
    pick = step(run, "pick")
    assert pick.status == "failed"
    with pytest.raises(Conflict, match="Only a failed step"):
        runs.step_retry(access=owner_access, step=step(ok, "a"))
    runs.step_retry(access=owner_access, step=pick)
    assert step(run, "pick").status == "queued"
    drain()
    assert step(run, "pick").attempt == 2


def test_rerun_starts_a_new_run_with_the_same_version_and_inputs(
    owner_access: Access, in_alpha: None
) -> None:
    run = start(
        flow([transform("a", "{{ input.q }}")], [], inputs={"q": {"type": "string"}}),
        {"q": "again"},
    )
    drain()
    again = runs.run_rerun(access=owner_access, run=run)
    assert again.pk != run.pk
    assert (again.trigger, again.rerun_of_id, again.version_id) == ("rerun", run.pk, run.version_id)
    assert again.inputs == {"q": "again"}
    drain()
    again.refresh_from_db()
    assert again.status == "succeeded"
    assert again.output == {"a": "again"}


# --- duplicate delivery ----------------------------------------------------------------------


def test_the_same_step_delivered_twice_gives_one_result_and_one_ledger_row(
    fake_model: str, fake_openai: FakeOpenAI
) -> None:
    run = start(
        flow([{"id": "ask", "type": "llm", "config": {"model": fake_model, "prompt": "Hi"}}], [])
    )
    ask = step(run, "ask")
    assert engine.step_execute(ask.pk) == "done"
    assert engine.step_execute(ask.pk) == "ignored"
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert len(fake_openai.requests) == 1
    assert UsageRecord.objects.count() == 1
    assert step(run, "ask").attempt == 1


def test_a_delivery_while_another_worker_executes_the_step_does_nothing(
    in_alpha: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("workflows.engine.execute.BUSY_WAIT_SECONDS", 0.2)
    run = start(flow([transform("a", 1)], []))
    a = step(run, "a")
    key = _advisory_key(a.pk)
    held, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        from django.db import connections

        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
            held.set()
            release.wait(10)
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        connections["default"].close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert held.wait(10)
        assert engine.step_execute(a.pk) == "busy"
        assert step(run, "a").status == "queued"
    finally:
        release.set()
        thread.join()
    assert engine.step_execute(a.pk) == "done"


def test_recorded_calls_replay_when_a_running_attempt_is_delivered_again(
    fake_model: str, fake_openai: FakeOpenAI
) -> None:
    """A worker that died mid-step leaves the step running; the redelivery continues the same
    attempt and its tool call replays instead of happening twice."""
    run = start(
        flow(
            [
                {
                    "id": "calc",
                    "type": "tool",
                    "config": {"tool": "calculator", "arguments": {"expression": "6 * 7"}},
                }
            ],
            [],
        )
    )
    calc = step(run, "calc")
    # The first delivery recorded the call and died before completing:
    StepRun.objects.filter(pk=calc.pk).update(status=StepStatus.RUNNING, attempt=1)
    RecordedCall.objects.create(
        step=calc,
        attempt=1,
        index=0,
        kind="tool",
        fingerprint=replay.tool_fingerprint("calculator", {"expression": "6 * 7"}),
        response={"output": "42 (recorded)", "ok": True},
    )
    engine.step_execute(calc.pk)
    calc.refresh_from_db()
    assert calc.status == "succeeded"
    assert calc.attempt == 1
    assert calc.output == {"result": "42 (recorded)"}
