"""Run completion in a workspace feeds the listing's figures: only numbers cross into the
public schema, the install becomes eligible to review, and a copy that is not from the
marketplace reports nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django_tenants.utils import schema_context

from accounts.models import User
from agents.models import Agent, AgentRun
from agents.runs.executor import execute_run
from agents.services import agent_create
from core.hooks import RunFinished, run_finished
from marketplace import services
from marketplace.models import Category, Install, Listing, RunSample
from tests.helpers.personas import World, access_of
from tests.helpers.workflows import drain
from workflows import runs
from workflows.models import Workflow, WorkflowRun
from workflows.services import workflow_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(world: World) -> User:
    Category.objects.create(slug="support", name="Support")
    return User.objects.create_superuser(email="mod@platform.test", password="x")


def _publish_and_install(world: World, staff: User, kind: str, source_id: int) -> Install:
    version = services.listing_publish(
        access=access_of(world.owner, world.workspace_a),
        kind=kind,
        source_id=source_id,
        title=f"Shared {kind}",
        summary="For everyone.",
        category_slug="support",
    )
    services.version_approve(user=staff, version=version)
    listing = Listing.objects.get(pk=version.listing_id)
    return services.install(access=access_of(world.outsider, world.workspace_b), listing=listing)


def test_an_installed_agent_run_updates_the_listing_and_allows_a_review(
    world: World, staff: User
) -> None:
    with schema_context(world.workspace_a.schema_name):
        agent_id = agent_create(
            access=access_of(world.owner, world.workspace_a),
            name="Greeter",
            model="offline:demo",
            system_prompt="Say hello.",
        ).pk
    installed = _publish_and_install(world, staff, "agent", agent_id)
    bravo = access_of(world.outsider, world.workspace_b)
    with schema_context(world.workspace_b.schema_name):
        copy = Agent.objects.get(pk=installed.object_id)
        assert copy.current_version is not None
        run = AgentRun.objects.create(agent=copy, version=copy.current_version, input="Hi there")
        assert execute_run(run.pk) == AgentRun.Status.SUCCEEDED

    listing = Listing.objects.get(pk=installed.listing_id)
    assert listing.run_count == 1
    assert listing.success_rate == pytest.approx(1.0)
    assert listing.p95_latency_ms is not None
    assert listing.median_cost_usd is not None
    sample = RunSample.objects.get()
    assert sample.succeeded
    assert sample.listing_id == listing.pk
    assert Install.objects.get(pk=installed.pk).runs_completed == 1
    review = services.review_save(access=bravo, listing=listing, rating=5, text="Works")
    assert review.rating == 5


def test_an_installed_workflow_run_is_recorded_after_commit(
    world: World, staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    definition = {
        "schema_version": 1,
        "steps": [{"id": "hello", "type": "transform", "config": {"value": "hi"}}],
        "edges": [],
    }
    with schema_context(world.workspace_a.schema_name):
        workflow_id = workflow_create(
            access=access_of(world.owner, world.workspace_a), name="Hello", definition=definition
        ).pk
    installed = _publish_and_install(world, staff, "workflow", workflow_id)
    with schema_context(world.workspace_b.schema_name):
        copy = Workflow.objects.get(pk=installed.object_id)
        with django_capture_on_commit_callbacks(execute=True):
            run = runs.run_start(workflow=copy, inputs={}, trigger=WorkflowRun.TriggerKind.MANUAL)
            drain()
        run.refresh_from_db()
        assert run.status == "succeeded"
    listing = Listing.objects.get(pk=installed.listing_id)
    assert listing.run_count == 1
    assert listing.success_rate == pytest.approx(1.0)


def test_runs_of_workspace_made_agents_report_nothing(world: World) -> None:
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(
            access=access_of(world.owner, world.workspace_a), name="Own", model="offline:demo"
        )
        assert agent.current_version is not None
        run = AgentRun.objects.create(agent=agent, version=agent.current_version, input="Hi")
        execute_run(run.pk)
    assert RunSample.objects.count() == 0


def test_a_failing_subscriber_never_fails_the_run_and_is_logged(
    world: World, staff: User, caplog: pytest.LogCaptureFixture
) -> None:
    """The run-finished hook: every subscriber gets the typed event after commit; one that
    raises is logged, the others still run, and the run keeps its own outcome."""
    events: list[RunFinished] = []

    def broken(event: RunFinished) -> None:
        raise RuntimeError("statistics store is down")

    run_finished.subscribe(broken)
    run_finished.subscribe(events.append)
    try:
        with schema_context(world.workspace_a.schema_name):
            agent = agent_create(
                access=access_of(world.owner, world.workspace_a), name="Own", model="offline:demo"
            )
            assert agent.current_version is not None
            run = AgentRun.objects.create(agent=agent, version=agent.current_version, input="Hi")
            assert execute_run(run.pk) == AgentRun.Status.SUCCEEDED
            run.refresh_from_db()
    finally:
        run_finished.unsubscribe(broken)
        run_finished.unsubscribe(events.append)

    assert run.status == AgentRun.Status.SUCCEEDED
    assert run.output
    [event] = events
    assert (event.kind, event.run_id, event.status) == ("agent", run.pk, "succeeded")
    assert event.schema_name == world.workspace_a.schema_name
    assert event.listing_version_id is None
    assert event.latency_ms >= 0
    assert any(
        "hook run_finished" in r.getMessage() and "broken" in r.getMessage() for r in caplog.records
    )
