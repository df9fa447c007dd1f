"""Runs per month, enforced before the work: a start past the plan's allowance is refused with
a message naming the limit, the figure and how to raise it (402 in the API), nothing is
created, overage plans keep running, a new period starts the count again, and two starts at
the last allowed run cannot both pass."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.gateway.budgets import BudgetExceeded
from agents.gateway.calls import gateway_complete
from agents.models import Agent, AgentRun, UsageRecord
from agents.providers.base import ChatRequest, Message
from agents.services import agent_create, agent_run_start
from billing.models import Plan, WorkspacePlan
from billing.plans import default_plan, workspace_plan
from billing.quotas import QuotaExceeded
from tenants.permissions import Perm
from tests.helpers.notifications import deliver_emails
from tests.helpers.personas import World, access_of, key_client
from tests.helpers.workflows import flow, make_workflow, transform
from workflows import runs
from workflows.models import WorkflowRun


@pytest.fixture
def two_runs(settings: Any, world: World) -> Plan:
    """Quotas on, and the default plan (which every test workspace is on) allows 2 runs."""
    settings.BILLING_QUOTAS = True
    plan = default_plan()
    plan.runs_per_month = 2
    plan.save(update_fields=["runs_per_month"])
    return plan


def _agent(world: World) -> Agent:
    return agent_create(
        access=access_of(world.owner, world.workspace_a), name="Helper", model="offline:demo"
    )


@pytest.mark.django_db
def test_a_run_past_the_allowance_is_refused_and_nothing_is_created(
    world: World, two_runs: Plan
) -> None:
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent = _agent(world)
        for _ in range(2):
            agent_run_start(access=access, agent_id=agent.pk, input="hi")
        with pytest.raises(QuotaExceeded) as refused:
            agent_run_start(access=access, agent_id=agent.pk, input="one more")
        assert AgentRun.objects.count() == 2
    message = refused.value.message
    assert "2 runs" in message
    assert "Free" in message
    assert "2 of 2" in message
    assert "upgrade the plan on the Billing page" in message
    assert refused.value.status == 402
    assert workspace_plan(workspace=world.workspace_a).runs_used == 2


@pytest.mark.django_db
def test_workflow_runs_count_against_the_same_allowance(world: World, two_runs: Plan) -> None:
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent_run_start(access=access, agent_id=_agent(world).pk, input="hi")
        workflow = make_workflow(flow([transform("a", "x")], []))
        runs.run_start(workflow=workflow, inputs={}, trigger="manual", access=access)
        with pytest.raises(QuotaExceeded):  # a schedule or webhook trigger has no access
            runs.run_start(workflow=workflow, inputs={}, trigger="schedule")
        assert WorkflowRun.objects.count() == 1


@pytest.mark.django_db
def test_the_api_answers_402_with_the_error_envelope(world: World, two_runs: Plan) -> None:
    client = key_client(world, [Perm.BUILD, Perm.RUN, Perm.WORKSPACE_VIEW])
    agent_id = client.post(
        "/api/v1/agents/", {"name": "A", "model": "offline:demo"}, format="json"
    ).json()["id"]
    statuses = [
        client.post(f"/api/v1/agents/{agent_id}/runs/", {"input": "hi"}, format="json")
        for _ in range(3)
    ]
    assert [r.status_code for r in statuses] == [202, 202, 402]
    error = statuses[-1].json()["error"]
    assert error["code"] == "quota_exceeded"
    assert "2 runs" in error["message"]


@pytest.mark.django_db
def test_a_plan_with_overage_keeps_running_past_the_allowance(world: World, two_runs: Plan) -> None:
    Plan.objects.filter(pk=two_runs.pk).update(allows_overage=True)
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent = _agent(world)
        for _ in range(3):
            agent_run_start(access=access, agent_id=agent.pk, input="hi")
    assert workspace_plan(workspace=world.workspace_a).runs_used == 3


@pytest.mark.django_db
def test_a_new_period_starts_the_count_again(world: World, two_runs: Plan) -> None:
    row = workspace_plan(workspace=world.workspace_a)
    past_end = timezone.now() - timedelta(days=40)
    WorkspacePlan.objects.filter(pk=row.pk).update(
        runs_used=2,
        current_period_start=past_end - timedelta(days=30),
        current_period_end=past_end,
    )
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent_run_start(access=access, agent_id=_agent(world).pk, input="hi")
    row.refresh_from_db()
    assert row.runs_used == 1
    assert row.current_period_start <= timezone.now() < row.current_period_end


@pytest.mark.django_db
def test_with_quotas_off_nothing_is_counted_or_refused(world: World, settings: Any) -> None:
    settings.BILLING_QUOTAS = False
    Plan.objects.filter(pk=default_plan().pk).update(runs_per_month=0)
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent_run_start(access=access, agent_id=_agent(world).pk, input="hi")
    assert workspace_plan(workspace=world.workspace_a).runs_used == 0


@pytest.mark.django_db(transaction=True)
def test_two_starts_at_the_last_allowed_run_cannot_both_pass(
    committed_world: World, settings: Any
) -> None:
    settings.BILLING_QUOTAS = True
    world = committed_world
    plan = default_plan()
    Plan.objects.filter(pk=plan.pk).update(runs_per_month=1)
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent = _agent(world)
    workspace_plan(workspace=world.workspace_a)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def start() -> None:
        try:
            with schema_context(world.workspace_a.schema_name):
                barrier.wait(timeout=30)
                agent_run_start(access=access, agent_id=agent.pk, input="race")
            outcomes.append("started")
        except QuotaExceeded:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["refused", "started"]
    with schema_context(world.workspace_a.schema_name):
        assert AgentRun.objects.filter(input="race").count() == 1
    assert workspace_plan(workspace=world.workspace_a).runs_used == 1


@pytest.mark.django_db
def test_the_try_it_form_shows_why_a_run_was_refused(
    world: World, two_runs: Plan, owner_client: Any
) -> None:
    with schema_context(world.workspace_a.schema_name):
        agent = _agent(world)
    url = f"/w/alpha/agents/{agent.pk}/run/"
    for _ in range(2):
        assert owner_client.post(url, {"input": "hi"}, HTTP_HX_REQUEST="true").status_code == 200
    refused = owner_client.post(url, {"input": "hi"}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 400
    page = refused.content.decode()
    assert "2 runs" in page
    assert "Billing page" in page


@pytest.mark.django_db
def test_a_model_call_past_the_included_ai_spend_is_refused_before_it_is_sent(
    world: World, settings: Any, fake_openai: Any, fake_model: str
) -> None:
    """The gateway reserves the most a call could cost against what the plan includes this
    period; the model server never sees a refused call, and the ledger gets no row."""
    settings.BILLING_QUOTAS = True
    Plan.objects.filter(pk=default_plan().pk).update(included_ai_spend_usd=Decimal("0.01"))
    request = ChatRequest(
        model="", max_tokens=1000, messages=(Message(role="user", content="Summarise"),)
    )
    UsageRecord.objects.create(
        kind="openai_compatible", model="m1", outcome="ok", cost_usd=Decimal("0.0095")
    )
    with pytest.raises(BudgetExceeded) as refused:  # carries what a run spent before it
        gateway_complete(model=fake_model, request=request)
    assert fake_openai.requests == []
    assert UsageRecord.objects.count() == 1
    message = refused.value.message
    assert "$0.01 of AI spend its Free plan includes" in message
    assert "$0.0005 left" in message
    assert "upgrade the plan on the Billing page" in message


@pytest.mark.django_db
def test_a_plan_with_overage_does_not_cap_ai_spend(
    world: World, settings: Any, fake_openai: Any, fake_model: str
) -> None:
    settings.BILLING_QUOTAS = True
    Plan.objects.filter(pk=default_plan().pk).update(
        included_ai_spend_usd=Decimal(0), allows_overage=True
    )
    fake_openai.queue(text="Done")
    request = ChatRequest(model="", max_tokens=50, messages=(Message(role="user", content="Hi"),))
    answer = gateway_complete(model=fake_model, request=request)
    assert answer.result.text == "Done"
    assert len(fake_openai.requests) == 1


@pytest.mark.django_db
def test_a_read_only_workspace_makes_no_priced_model_call_even_on_an_overage_plan(
    world: World, settings: Any, fake_openai: Any, fake_model: str
) -> None:
    """Payment failed and grace ended: runs are refused at the start, and chat turns (which are
    not runs) are refused at the gateway, before the model server sees them."""
    settings.BILLING_QUOTAS = True
    Plan.objects.filter(pk=default_plan().pk).update(allows_overage=True)
    WorkspacePlan.objects.filter(workspace=world.workspace_a).update(
        status=WorkspacePlan.Status.READ_ONLY
    )
    request = ChatRequest(model="", max_tokens=50, messages=(Message(role="user", content="Hi"),))
    with pytest.raises(BudgetExceeded) as refused:
        gateway_complete(model=fake_model, request=request)
    assert fake_openai.requests == []
    assert "Runs are paused: the payment for this workspace's Free plan failed" in (
        refused.value.message
    )
    assert "Manage payment on the Billing page" in refused.value.message


@pytest.mark.django_db
def test_owners_and_admins_are_mailed_once_at_80_and_at_100_percent(
    world: World, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.BILLING_QUOTAS = True
    Plan.objects.filter(pk=default_plan().pk).update(runs_per_month=5)
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent = _agent(world)
        sent: list[int] = []
        for _ in range(5):
            with django_capture_on_commit_callbacks(execute=True):
                agent_run_start(access=access, agent_id=agent.pk, input="hi")
            deliver_emails()  # the worker's part: notification emails are sent by a task
            sent.append(len(mail.outbox))
        with pytest.raises(QuotaExceeded):
            agent_run_start(access=access, agent_id=agent.pk, input="one more")
    assert sent == [0, 0, 0, 1, 2]  # the 4th run is 80 %, the 5th 100 %; the 6th mails nothing
    at_80, at_100 = mail.outbox
    assert "80% of its plan's runs" in at_80.subject
    assert "4 of the 5 runs" in at_80.body
    assert "upgrade" in at_80.body.lower()
    assert "100% of its plan's runs" in at_100.subject
    assert "refused" in at_100.body
    assert at_80.to == ["owner@alpha.test"]


@pytest.mark.django_db
def test_a_read_only_workspace_sends_no_priced_embedding_request(
    world: World, settings: Any, fake_openai: Any
) -> None:
    """Knowledge ingestion with the provider's (priced) embeddings is a model call too: refused
    before the request, with the reason on the document."""
    from agents.knowledge import services as knowledge
    from agents.models import KnowledgeDocument
    from billing.models import ModelPrice

    settings.BILLING_QUOTAS = True
    settings.EMBEDDER = "openai"
    settings.LLM_PLATFORM_BASE_URLS = {"openai": fake_openai.base_url}
    settings.LLM_PLATFORM_KEYS = {"openai": "sk-platform-0000"}
    ModelPrice.objects.create(
        provider="openai",
        model="text-embedding-3-small",
        input_per_mtok=Decimal("0.02"),
        output_per_mtok=Decimal(0),
    )
    WorkspacePlan.objects.filter(workspace=world.workspace_a).update(
        status=WorkspacePlan.Status.READ_ONLY
    )
    with schema_context(world.workspace_a.schema_name):
        access = access_of(world.owner, world.workspace_a)
        base = knowledge.knowledge_base_create(access=access, name="Handbook")
        document = knowledge.document_create(
            knowledge_base=base, filename="refunds.txt", data=b"Refunds are paid in 14 days."
        )
        knowledge.document_ingest(document_id=document.pk)
        document = KnowledgeDocument.objects.get(pk=document.pk)
        assert not UsageRecord.objects.filter(purpose="embedding").exists()
    assert fake_openai.requests_to("embeddings") == []
    assert document.status == "failed"
    assert "Runs are paused: the payment for this workspace's Free plan failed" in document.error
