"""Shared helpers for workflow tests.

- `make_workflow(definition, name=...)`: a Workflow with `definition` as its published v1, in
  the current schema (no validation: tests build the documents they need).
- `drain()`: run the engine inline until nothing is ready, as workers would: every queued step
  (backoff delays are not waited for) and every sub-workflow step whose child run ended.
- `in_alpha`: the test body runs in workspace A's schema.
- `fake_model`: the model alias "fake" on a loopback FakeOpenAI (`fake_openai`), priced, so
  calls are counted on the server and cost money in the ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from django_tenants.utils import schema_context

from agents.models import AliasTarget, ModelAlias, ProviderCredential
from billing.models import ModelPrice
from tenants.models import Workspace
from tests.fakes import FakeOpenAI
from workflows import engine
from workflows.models import RUN_FINISHED, StepRun, StepStatus, Workflow, WorkflowVersion


def make_workflow(definition: dict[str, Any], *, name: str = "Flow") -> Workflow:
    workflow = Workflow.objects.create(name=name)
    version = WorkflowVersion.objects.create(workflow=workflow, number=1, definition=definition)
    workflow.active_version = version
    workflow.save(update_fields=["active_version"])
    return workflow


def drain(*, limit: int = 500, after_each: Callable[[StepRun], None] | None = None) -> list[str]:
    """Execute ready steps one at a time, oldest first; returns "node_id" or "node_id[i]" of
    each step executed. `after_each(step)` runs after every execution (for invariants)."""
    executed: list[str] = []
    live = StepRun.objects.exclude(run__status__in=RUN_FINISHED)
    for _ in range(limit):
        step = live.filter(status=StepStatus.QUEUED).order_by("queued_at", "id").first()
        if step is None:
            step = (
                live.filter(
                    status=StepStatus.WAITING,
                    node_type="sub_workflow",
                    child_runs__status__in=RUN_FINISHED,
                )
                .order_by("id")
                .first()
            )
        if step is None:
            return executed
        engine.step_execute(step.pk)
        executed.append(
            step.node_id if step.item_index is None else f"{step.node_id}[{step.item_index}]"
        )
        if after_each is not None:
            after_each(step)
    raise AssertionError(f"the runs did not settle after {limit} steps: {executed[-10:]}")


@pytest.fixture
def in_alpha(workspace_a: Workspace) -> Iterator[None]:
    with schema_context(workspace_a.schema_name):
        yield


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake
    assert fake.server_errors == []


@pytest.fixture
def fake_model(settings: Any, fake_openai: FakeOpenAI, in_alpha: None) -> str:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    return register_fake_model(fake_openai.base_url)


def register_fake_model(base_url: str, *, name: str = "fake") -> str:
    """The alias `name` → model "m1" on an OpenAI-compatible server at `base_url`, priced at
    $3 / $15 per million tokens. In the current schema."""
    credential = ProviderCredential(name=name, kind="openai_compatible", base_url=base_url)
    credential.set_api_key("sk-test-key")
    credential.save()
    alias = ModelAlias.objects.create(name=name)
    AliasTarget.objects.create(
        alias=alias, position=0, kind="openai_compatible", model="m1", credential=credential
    )
    ModelPrice.objects.get_or_create(
        provider="openai_compatible",
        model="m1",
        defaults={"input_per_mtok": Decimal("3"), "output_per_mtok": Decimal("15")},
    )
    return name
