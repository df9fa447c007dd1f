from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from agents import services
from agents.models import Agent, AgentRun, AliasTarget, ModelAlias, ProviderCredential
from agents.runs import execute_run
from billing.models import ModelPrice
from tenants.models import Workspace
from tenants.permissions import Access
from tests.fakes import FakeAnthropic, FakeOpenAI


def run_now(access: Access, agent: Agent, text: str) -> AgentRun:
    """Start a run and execute it in this process (what the worker does)."""
    run = services.agent_run_start(access=access, agent_id=agent.pk, input=text)
    execute_run(run.pk)
    run.refresh_from_db()
    return run


@pytest.fixture
def fake_anthropic(settings) -> Iterator[FakeAnthropic]:
    # A workspace credential pointing at a server on loopback is a model server on the
    # operator's own network: the outbound guard lets it through only when that is allowed.
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    with FakeAnthropic() as fake:
        yield fake
    assert fake.server_errors == []


@pytest.fixture
def fake_openai(settings) -> Iterator[FakeOpenAI]:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # as for fake_anthropic
    with FakeOpenAI() as fake:
        yield fake
    assert fake.server_errors == []


@pytest.fixture
def in_alpha(workspace_a: Workspace) -> Iterator[None]:
    with schema_context(workspace_a.schema_name):
        yield


@pytest.fixture
def fake_model(settings, fake_openai: FakeOpenAI, in_alpha: None) -> str:
    """`vllm:…` names a model on the fake server (an OpenAI-compatible credential)."""
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    credential = ProviderCredential(
        name="fake", kind="openai_compatible", base_url=fake_openai.base_url
    )
    credential.set_api_key("sk-test-key")
    credential.save()
    alias = ModelAlias.objects.create(name="fake")
    AliasTarget.objects.create(
        alias=alias, position=0, kind="openai_compatible", model="m1", credential=credential
    )
    ModelPrice.objects.create(
        provider="openai_compatible",
        model="m1",
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
    )
    return "fake"
