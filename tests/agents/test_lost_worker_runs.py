"""An agent run whose worker died is started again as a new attempt, but not forever: a run that
keeps killing its worker (memory, a hard time limit) would pay the provider on every attempt."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from agents import services
from agents.models import AgentRun
from agents.runs.executor import MAX_ATTEMPTS, execute_run
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.django_db


def _orphan(world: World, *, attempt: int) -> AgentRun:
    """A run marked running by a worker that is gone: nobody holds its advisory lock."""
    agent = services.agent_create(
        access=access_of(world.owner, world.workspace_a),
        name="Helper",
        model="offline:demo",
        system_prompt="Be brief.",
    )
    assert agent.current_version is not None
    return AgentRun.objects.create(
        agent=agent,
        version=agent.current_version,
        input="hello",
        status=AgentRun.Status.RUNNING,
        attempt=attempt,
    )


def test_a_run_that_lost_its_worker_runs_again_as_the_next_attempt(world: World) -> None:
    with schema_context(world.workspace_a.schema_name):
        run = _orphan(world, attempt=1)
        execute_run(run.pk)
        run.refresh_from_db()
    assert (run.status, run.attempt) == (AgentRun.Status.SUCCEEDED, 2)


def test_a_run_that_keeps_losing_its_worker_is_failed_not_retried(world: World) -> None:
    with schema_context(world.workspace_a.schema_name):
        run = _orphan(world, attempt=MAX_ATTEMPTS)
        execute_run(run.pk)
        run.refresh_from_db()
    assert run.status == AgentRun.Status.FAILED
    assert run.attempt == MAX_ATTEMPTS
    assert f"worker was lost {MAX_ATTEMPTS} times" in run.error
    assert run.finished_at is not None
