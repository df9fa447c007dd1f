"""Where a paid listing's copy answers (docs/marketplace.md, "Where a paid copy answers"):
chats, shared chats, other workflows' agent and sub-workflow steps and agent evaluations ask
the marketplace like runs do, before anything is created, queued or counted. Without a runnable
purchase every surface refuses with the 402 message naming the listing (a visitor reads only
that the chat cannot answer; the owners read why on the share's page); a one-time purchase's
copy answers everywhere; a per-run purchase's copy answers only in runs (each success charged
once), never in a chat, a shared chat, an evaluation or another workflow's step. Retrying and
resuming a copy's run ask again; a duplicate stays a copy of the listing; exporting a paid copy
(or a workflow binding one) is refused."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.urls import reverse
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from agents.chat import services as chat
from agents.chat.answering import turn_answer
from agents.embed import services as embed
from agents.models import Agent, AgentRun, Conversation, ConversationTurn
from agents.services import agent_create, agent_duplicate, agent_run_start
from billing.models import WorkspacePlan
from evals import services as evals
from evals.models import Evaluation
from marketplace.copy_export import PaidCopyExport
from marketplace.models import Category, Listing, Publisher, Purchase, RunCharge
from marketplace.pricing import PurchaseRequired
from tests.fakes import FakeStripe
from tests.helpers.agents import run_now
from tests.helpers.marketplace import make_listing
from tests.helpers.personas import World, access_of, key_client, logged_in
from tests.helpers.workflows import drain, flow, make_workflow, step, transform
from workflows import io, runs
from workflows.models import RunStatus, Workflow, WorkflowRun
from workflows.step_tests import step_test

pytestmark = pytest.mark.django_db

PER_RUN = "only runs are charged"


@pytest.fixture(autouse=True)
def _billing_on(fake_stripe: FakeStripe, settings: Any) -> None:
    """Billing in test mode (the loopback Stripe fake), the plan's quotas counted."""
    settings.BILLING_QUOTAS = True
    cache.clear()


def _paid(
    publisher: Publisher,
    categories: dict[str, Category],
    kind: str = "agent",
    pricing: str = "monthly",
    cents: int = 900,
) -> Listing:
    listing = make_listing(
        publisher=publisher,
        category=categories["support"],
        title=f"Paid {kind}",
        kind=kind,
        pricing=pricing,
        price_cents=cents,
        index=False,
    )
    assert listing.current_version is not None
    type(listing.current_version).objects.filter(pk=listing.current_version.pk).update(
        pricing=pricing, price_cents=cents
    )
    return listing


def _buy(world: World, listing: Listing) -> Purchase:
    assert listing.current_version is not None
    return Purchase.objects.create(
        buyer=world.workspace_b,
        listing=listing,
        version=listing.current_version,
        publisher=listing.publisher,
        pricing=listing.pricing,
        unit_amount_cents=listing.price_cents,
        fee_percent=Decimal(20),
        status=Purchase.Status.ACTIVE,
    )


def _buyer(world: World) -> Any:
    return access_of(world.outsider, world.workspace_b)


def _agent_copy(world: World, listing: Listing, name: str = "Copy") -> Agent:
    with schema_context(world.workspace_b.schema_name):
        agent = agent_create(access=_buyer(world), name=name, model="offline:demo")
        Agent.objects.filter(pk=agent.pk).update(listing_version_id=listing.current_version_id)
        agent.refresh_from_db()
        return agent


def _runs_used(world: World) -> int:
    return WorkspacePlan.objects.get(workspace=world.workspace_b).runs_used


def _agent_step(agent: Agent) -> dict[str, Any]:
    return {
        "id": "a",
        "type": "agent",
        "config": {"agent_id": agent.pk, "agent": agent.name, "prompt": "Hi"},
    }


def _run_workflow(world: World, workflow: Workflow) -> WorkflowRun:
    run = runs.run_start(workflow=workflow, inputs={}, trigger="manual", access=_buyer(world))
    drain()
    run.refresh_from_db()
    return run


def _suite(world: World) -> int:
    dataset = evals.dataset_import(
        access=_buyer(world), name="D", filename="d.jsonl", data=b'{"input": "Say hello"}\n'
    )
    suite = evals.suite_create(
        access=_buyer(world),
        name="S",
        dataset_id=dataset.pk,
        evaluators_spec=[{"kind": "regex", "pattern": "."}],
    )
    return suite.pk


def _visitor_ask(share_key: str, question: str) -> Any:
    space, key = "bravo", share_key
    token = (
        APIClient()
        .post(reverse("api-share-visitor-tokens", kwargs={"space": space, "share_key": key}))
        .json()["token"]
    )
    client = APIClient()
    client.credentials(HTTP_X_END_USER_TOKEN=token)
    return client.post(
        reverse("api-share-visitor-conversation", kwargs={"space": space, "share_key": key}),
        {"question": question},
        format="json",
    )


# ------------------------------------------------------------------ chats


def test_a_member_cannot_chat_with_a_copy_without_a_purchase_and_nothing_is_queued(
    world: World, publisher: Publisher, categories: dict[str, Category]
) -> None:
    listing = _paid(publisher, categories)
    agent = _agent_copy(world, listing)

    with schema_context(world.workspace_b.schema_name):
        with pytest.raises(PurchaseRequired) as refused:
            chat.conversation_start(access=_buyer(world), agent_id=agent.pk, question="Hello")
        assert refused.value.status == 402
        assert "“Paid agent” is a paid listing ($9.00 a month)" in refused.value.message
        assert not Conversation.objects.exists()

    # the page shows it beside the agent picker
    page = logged_in(world.outsider).post(
        reverse("conversation_new", kwargs={"workspace_slug": "bravo"}),
        {"agent": agent.pk, "question": "Hello"},
    )
    assert page.status_code == 400
    assert "is a paid listing ($9.00 a month)" in page.context["form"].errors["agent"][0]

    # bought once: the chat answers, turn after turn
    purchase = _buy(world, listing)
    with schema_context(world.workspace_b.schema_name):
        conversation = chat.conversation_start(
            access=_buyer(world), agent_id=agent.pk, question="Hello"
        )
        assert turn_answer(conversation.turns.get().pk) == ConversationTurn.Status.DONE
        chat.turn_start(access=_buyer(world), conversation_id=conversation.pk, question="More")

    # the purchase ends: the next question is refused beside the composer, nothing queued
    Purchase.objects.filter(pk=purchase.pk).update(status=Purchase.Status.ENDED)
    with schema_context(world.workspace_b.schema_name):
        ConversationTurn.objects.update(status=ConversationTurn.Status.DONE)
        with pytest.raises(PurchaseRequired) as refused:
            chat.turn_start(access=_buyer(world), conversation_id=conversation.pk, question="Q")
        assert "active purchase of it" in refused.value.fields["question"][0]
        assert conversation.turns.count() == 2

    # the conversation page's composer (its no-JavaScript form) shows it beside the question
    page = logged_in(world.outsider).post(
        reverse(
            "conversation_send",
            kwargs={"workspace_slug": "bravo", "conversation_id": conversation.pk},
        ),
        {"question": "Q"},
    )
    assert page.status_code == 400
    assert "active purchase of it" in page.context["form"].errors["question"][0]
    with schema_context(world.workspace_b.schema_name):
        assert conversation.turns.count() == 2


def test_a_visitor_of_a_shared_copy_without_a_purchase_reads_a_visitors_message(
    world: World, publisher: Publisher, categories: dict[str, Category]
) -> None:
    listing = _paid(publisher, categories, pricing="one_time", cents=1900)
    agent = _agent_copy(world, listing)
    with schema_context(world.workspace_b.schema_name):
        share = embed.share_create(access=_buyer(world), agent_id=agent.pk, title="Help")
    used = _runs_used(world)

    refused = _visitor_ask(share.key, "Hello")

    assert refused.status_code == 402
    error = refused.json()["error"]
    assert (error["code"], error["message"]) == ("chat_unavailable", embed.VISITOR_UNAVAILABLE)
    assert "Paid agent" not in refused.content.decode()  # the workspace's purchases stay private
    with schema_context(world.workspace_b.schema_name):
        assert not Conversation.objects.exists()
    assert _runs_used(world) == used  # nothing counted

    # the owners read why on the share's page
    page = logged_in(world.outsider).get(
        reverse("share_detail", kwargs={"workspace_slug": "bravo", "share_id": share.pk})
    )
    assert page.status_code == 200
    assert "Visitors cannot chat with Copy" in page.content.decode()
    assert "is a paid listing ($19.00 one-time)" in page.content.decode()

    _buy(world, listing)
    assert _visitor_ask(share.key, "Hello").status_code == 202
    page = logged_in(world.outsider).get(
        reverse("share_detail", kwargs={"workspace_slug": "bravo", "share_id": share.pk})
    )
    assert "Visitors cannot chat" not in page.content.decode()


# ------------------------------------------------------------------ per-run: only runs


def test_a_per_run_copy_answers_only_in_runs_and_each_success_is_charged_once(
    world: World, publisher: Publisher, categories: dict[str, Category]
) -> None:
    listing = _paid(publisher, categories, pricing="per_run", cents=25)
    _buy(world, listing)
    agent = _agent_copy(world, listing)
    buyer = _buyer(world)
    with schema_context(world.workspace_b.schema_name):
        share = embed.share_create(access=buyer, agent_id=agent.pk, title="Help")
        suite_id = _suite(world)
        other = make_workflow(flow([_agent_step(agent)], []), name="Mine")

        # a member's chat
        with pytest.raises(PurchaseRequired, match=PER_RUN) as refused:
            chat.conversation_start(access=buyer, agent_id=agent.pk, question="Hello")
        assert "it cannot answer in a chat" in refused.value.message
        assert "$0.25 per successful run" in refused.value.message

        # an evaluation of it: refused, none created
        with pytest.raises(PurchaseRequired, match="an evaluation's cases"):
            evals.evaluation_start(access=buyer, suite_id=suite_id, agent_id=agent.pk)
        assert not Evaluation.objects.exists()

        # another workflow's agent step: the run fails with the message
        run = _run_workflow(world, other)
        assert run.status == RunStatus.FAILED
        assert "as a step of another workflow" in step(run, "a").error

        # an ordinary run: answers, charged once
        ran = run_now(buyer, agent, "Summarise this.")
        assert ran.status == AgentRun.Status.SUCCEEDED
        assert not Conversation.objects.exists()

    # a visitor: the visitor's message; the owner reads the per-run reason
    refused_visitor = _visitor_ask(share.key, "Hello")
    assert refused_visitor.status_code == 402
    assert refused_visitor.json()["error"]["message"] == embed.VISITOR_UNAVAILABLE
    page = logged_in(world.outsider).get(
        reverse("share_detail", kwargs={"workspace_slug": "bravo", "share_id": share.pk})
    )
    assert "cannot answer in a shared or embedded chat" in page.content.decode()

    assert list(RunCharge.objects.values_list("run_id", "amount_cents")) == [(ran.pk, 25)]


# ------------------------------------------------------------------ workflow steps


def test_another_workflows_agent_step_asks_for_the_agents_purchase(
    world: World, publisher: Publisher, categories: dict[str, Category]
) -> None:
    listing = _paid(publisher, categories, pricing="one_time")
    agent = _agent_copy(world, listing)
    with schema_context(world.workspace_b.schema_name):
        workflow = make_workflow(flow([_agent_step(agent)], []), name="Mine")
        run = _run_workflow(world, workflow)
        assert run.status == RunStatus.FAILED
        assert "“Paid agent” is a paid listing" in step(run, "a").error

        # bought: a retry of the failed step asks again, and now runs it
        _buy(world, listing)
        runs.step_retry(access=_buyer(world), step=step(run, "a"))
        drain()
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCEEDED
    assert not RunCharge.objects.exists()  # nothing per run here


def test_a_workflow_copys_own_step_agents_run_in_its_runs_charged_once_per_run(
    world: World,
    publisher: Publisher,
    categories: dict[str, Category],
    django_capture_on_commit_callbacks: Any,
) -> None:
    listing = _paid(publisher, categories, kind="workflow", pricing="per_run", cents=40)
    _buy(world, listing)
    agent = _agent_copy(world, listing, name="Step agent")  # installed with the workflow
    with schema_context(world.workspace_b.schema_name):
        workflow = make_workflow(flow([_agent_step(agent)], []), name="Installed")
        Workflow.objects.filter(pk=workflow.pk).update(
            listing_version_id=listing.current_version_id
        )
        workflow.refresh_from_db()
        with django_capture_on_commit_callbacks(execute=True):  # the run's finish is told
            run = _run_workflow(world, workflow)
        assert run.status == RunStatus.SUCCEEDED, step(run, "a").error

        # the same agent in another workflow is the sold workflow's part, not a run of it
        other = make_workflow(flow([_agent_step(agent)], []), name="Mine")
        elsewhere = _run_workflow(world, other)
        assert elsewhere.status == RunStatus.FAILED
        assert "as a step of another workflow" in step(elsewhere, "a").error
    assert list(RunCharge.objects.values_list("run_id", "amount_cents")) == [(run.pk, 40)]

    # nor is its step tested in the builder: a test is not a run, nothing would charge it
    version = workflow.active_version
    assert version is not None
    sample: dict[str, Any] = {"input": {}, "steps": {}}
    with schema_context(world.workspace_b.schema_name), pytest.raises(PurchaseRequired) as test:
        step_test(access=_buyer(world), version=version, step_id="a", sample=sample)
    assert "in a step test (a test is not a run)" in test.value.message

    # nor does it answer on its own: only the workflow's runs are charged
    with schema_context(world.workspace_b.schema_name), pytest.raises(PurchaseRequired) as no:
        agent_run_start(access=_buyer(world), agent_id=agent.pk, input="Hi")
    assert "answers only in that workflow's runs" in no.value.message
    with schema_context(world.workspace_b.schema_name):
        assert not AgentRun.objects.exists()
    assert RunCharge.objects.count() == 1


def test_an_installed_copy_is_never_published_again(
    world: World, publisher: Publisher, categories: dict[str, Category]
) -> None:
    listing = _paid(publisher, categories, kind="agent", pricing="one_time", cents=1900)
    _buy(world, listing)
    copy = _agent_copy(world, listing, name="Bought copy")
    api = key_client(world, ["workspace.view", "build"], workspace=world.workspace_b)
    body = {"kind": "agent", "source_id": copy.pk, "title": "Mine now", "summary": "Resold."}
    body |= {"category": "support"}
    refused = api.post("/api/v1/marketplace/listings/", body, format="json")
    assert refused.status_code == 400, refused.content
    assert "installed copy of “Paid agent”" in refused.json()["error"]["message"]
    assert "source_id" in refused.json()["error"]["fields"]

    # nor inside a workflow of one's own: its step agent would be given away
    with schema_context(world.workspace_b.schema_name):
        workflow = make_workflow(flow([_agent_step(copy)], []), name="Wrapper")
    body = {"kind": "workflow", "source_id": workflow.pk, "title": "Wrapper", "summary": "W."}
    body |= {"category": "support"}
    wrapped = api.post("/api/v1/marketplace/listings/", body, format="json")
    assert wrapped.status_code == 400, wrapped.content
    assert "installed copy of a paid marketplace listing" in wrapped.json()["error"]["message"]
    assert Listing.objects.count() == 1


def test_a_sub_workflow_step_asks_for_a_workflow_copys_purchase(
    world: World, publisher: Publisher, categories: dict[str, Category]
) -> None:
    listing = _paid(publisher, categories, kind="workflow", pricing="monthly")
    with schema_context(world.workspace_b.schema_name):
        child = make_workflow(flow([transform("t", 1)], []), name="Sold")
        Workflow.objects.filter(pk=child.pk).update(listing_version_id=listing.current_version_id)
        parent = make_workflow(
            flow([{"id": "s", "type": "sub_workflow", "config": {"workflow": "Sold"}}], []),
            name="Parent",
        )
        run = _run_workflow(world, parent)
        assert run.status == RunStatus.FAILED
        assert "“Paid workflow” is a paid listing" in step(run, "s").error
        assert WorkflowRun.objects.count() == 1  # no child run


def test_resuming_a_copys_failed_run_asks_again(
    world: World, publisher: Publisher, categories: dict[str, Category]
) -> None:
    listing = _paid(publisher, categories, kind="workflow", pricing="monthly")
    purchase = _buy(world, listing)
    with schema_context(world.workspace_b.schema_name):
        workflow = make_workflow(
            flow([{"id": "c", "type": "condition", "config": {"expression": "nope("}}], []),
            name="Installed",
        )
        Workflow.objects.filter(pk=workflow.pk).update(
            listing_version_id=listing.current_version_id
        )
        workflow.refresh_from_db()
        run = _run_workflow(world, workflow)
        assert run.status == RunStatus.FAILED
        Purchase.objects.filter(pk=purchase.pk).update(status=Purchase.Status.ENDED)
        for retry in (
            lambda: runs.run_resume(access=_buyer(world), run=run),
            lambda: runs.step_retry(access=_buyer(world), step=step(run, "c")),
        ):
            with pytest.raises(PurchaseRequired, match="active purchase of it"):
                retry()
        run.refresh_from_db()
        assert run.status == RunStatus.FAILED
        assert step(run, "c").attempt == 1


# ------------------------------------------------------------------ evaluations


def test_an_evaluation_of_a_copy_needs_a_purchase(
    world: World, publisher: Publisher, categories: dict[str, Category]
) -> None:
    listing = _paid(publisher, categories)
    agent = _agent_copy(world, listing)
    with schema_context(world.workspace_b.schema_name):
        suite_id = _suite(world)
        with pytest.raises(PurchaseRequired) as refused:
            evals.evaluation_start(access=_buyer(world), suite_id=suite_id, agent_id=agent.pk)
        assert "is a paid listing" in refused.value.fields["agent"][0]
        assert not Evaluation.objects.exists()
    client = key_client(world, ["run"], workspace=world.workspace_b)
    api = client.post(
        reverse("api-evals-evaluations"),
        {"suite": suite_id, "agent": agent.pk},
        format="json",
    )
    assert api.status_code == 402, api.content
    assert api.json()["error"]["code"] == "purchase_required"

    _buy(world, listing)
    with schema_context(world.workspace_b.schema_name):
        started = evals.evaluation_start(access=_buyer(world), suite_id=suite_id, agent_id=agent.pk)
        assert evals.evaluation_execute(started.pk) is not None
        started.refresh_from_db()
        assert started.cases_done == 1


# ------------------------------------------------------------------ duplicates and exports


def test_a_duplicate_of_a_paid_copy_stays_a_copy_gated_and_charged(
    world: World, publisher: Publisher, categories: dict[str, Category]
) -> None:
    listing = _paid(publisher, categories, pricing="per_run", cents=25)
    agent = _agent_copy(world, listing)
    with schema_context(world.workspace_b.schema_name):
        duplicate = agent_duplicate(access=_buyer(world), agent_id=agent.pk)
        assert duplicate.listing_version_id == listing.current_version_id
        with pytest.raises(PurchaseRequired):
            agent_run_start(access=_buyer(world), agent_id=duplicate.pk, input="Hello")
        assert not AgentRun.objects.exists()

    _buy(world, listing)
    with schema_context(world.workspace_b.schema_name):
        ran = run_now(_buyer(world), duplicate, "Hello")
    assert list(RunCharge.objects.values_list("run_id", flat=True)) == [ran.pk]


def test_exporting_a_paid_copy_or_a_workflow_binding_one_is_refused(
    world: World, publisher: Publisher, categories: dict[str, Category]
) -> None:
    paid_workflow = _paid(publisher, categories, kind="workflow", pricing="one_time", cents=1900)
    _buy(world, paid_workflow)
    paid_agent = _paid(publisher, categories, pricing="monthly")
    free = make_listing(
        publisher=publisher, category=categories["support"], title="Free one", index=False
    )
    agent = _agent_copy(world, paid_agent)
    with schema_context(world.workspace_b.schema_name):
        installed = make_workflow(flow([transform("t", 1)], []), name="Installed")
        binding = make_workflow(flow([_agent_step(agent)], []), name="Binding")
        free_copy = make_workflow(flow([transform("t", 1)], []), name="Free copy")
        Workflow.objects.filter(pk=installed.pk).update(
            listing_version_id=paid_workflow.current_version_id
        )
        Workflow.objects.filter(pk=free_copy.pk).update(listing_version_id=free.current_version_id)
        for workflow in (installed, binding, free_copy):
            workflow.refresh_from_db()

        with pytest.raises(PaidCopyExport) as refused:
            io.export_definition(installed, "json")
        assert refused.value.status == 403
        assert refused.value.message.startswith(
            "“Installed” cannot be exported: it is a copy of “Paid workflow”, a paid "
            "marketplace listing ($19.00 one-time)"
        )
        assert "free copy of what was sold" in refused.value.message
        with pytest.raises(PaidCopyExport, match="its steps use an agent copied from “Paid agent"):
            io.export_definition(binding, "yaml")
        assert "Free copy" in io.export_definition(free_copy, "json")  # a free listing's: fine

    # the download and the API say why; the builder's own source view still shows it
    client = logged_in(world.outsider)
    download = client.get(
        reverse("workflow_export", kwargs={"workspace_slug": "bravo", "workflow_id": installed.pk})
    )
    assert download.status_code == 403
    assert "free copy of what was sold" in download.content.decode()
    source = client.get(
        reverse("workflow_source", kwargs={"workspace_slug": "bravo", "workflow_id": installed.pk})
    )
    assert source.status_code == 200
    api = key_client(world, ["workspace.view"], workspace=world.workspace_b).get(
        reverse("api-workflow-export", kwargs={"pk": binding.pk})
    )
    assert api.status_code == 403
    assert api.json()["error"]["code"] == "paid_listing_copy"
