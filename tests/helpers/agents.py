"""Agents in tests: a model alias on a fake provider, and runs executed in this process."""

from __future__ import annotations

from decimal import Decimal

from agents import services
from agents.models import Agent, AgentRun, AliasTarget, ModelAlias, ProviderCredential
from agents.runs.executor import execute_run
from billing.models import ModelPrice
from tenants.permissions import Access


def run_now(access: Access, agent: Agent, text: str) -> AgentRun:
    """Start a run and execute it in this process (what the worker does)."""
    run = services.agent_run_start(access=access, agent_id=agent.pk, input=text)
    execute_run(run.pk)
    run.refresh_from_db()
    return run


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
