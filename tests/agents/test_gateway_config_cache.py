"""The gateway caches aliases, prices and the monthly cap per process
(agents/gateway/config_cache.py). These tests commit their changes (as the pages and the admin do)
and check that the very next call sees them, and that a call that reuses the cache does not read
the configuration tables."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from agents.gateway import aliases, budgets
from agents.gateway.aliases import TargetSpec
from agents.gateway.budgets import BudgetExceeded
from agents.gateway.calls import UnknownModel, gateway_complete
from agents.models import ProviderCredential, UsageRecord
from agents.providers.base import ChatRequest, Message
from billing.models import ModelPrice, WorkspacePlan
from billing.quotas import run_reserve
from tests.fakes import FakeOpenAI
from tests.helpers.personas import World, access_of

REQUEST = ChatRequest(model="", messages=(Message(role="user", content="Hello"),), max_tokens=50)


def _credential(name: str, base_url: str) -> ProviderCredential:
    credential = ProviderCredential(name=name, kind="openai_compatible", base_url=base_url)
    credential.set_api_key(f"sk-{name}-0000")
    credential.save()
    return credential


@pytest.fixture
def servers(committed_world: World, settings: Any) -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    with (
        FakeOpenAI(default_text="from the first") as first,
        FakeOpenAI(default_text="from the second") as second,
    ):
        yield first, second


def test_an_alias_edit_applies_to_the_next_call(
    committed_world: World, servers: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    first, second = servers
    access = access_of(committed_world.owner, committed_world.workspace_a)
    with schema_context(committed_world.workspace_a.schema_name):
        one, two = _credential("one", first.base_url), _credential("two", second.base_url)
        alias = aliases.alias_save(
            access=access, name="smart", targets=[TargetSpec("openai_compatible", "m1", one.pk)]
        )
        assert gateway_complete(model="smart", request=REQUEST).result.text == "from the first"
        with CaptureQueriesContext(connection) as queries:
            gateway_complete(model="smart", request=REQUEST)
        read = " ".join(q["sql"] for q in queries.captured_queries)
        assert "agents_modelalias" not in read
        assert "billing_modelprice" not in read
        assert "agents_usagerecord" in read  # the ledger row is still written every time

        aliases.alias_save(
            access=access,
            alias_id=alias.pk,
            name="smart",
            targets=[TargetSpec("openai_compatible", "m1", two.pk)],
        )
        assert gateway_complete(model="smart", request=REQUEST).result.text == "from the second"

        aliases.alias_delete(access=access, alias_id=alias.pk)
        with pytest.raises(UnknownModel):
            gateway_complete(model="smart", request=REQUEST)
    assert len(first.requests) == 2
    assert len(second.requests) == 1


def test_a_price_edit_and_a_new_budget_apply_to_the_next_call(
    committed_world: World, servers: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    first, _ = servers
    access = access_of(committed_world.owner, committed_world.workspace_a)
    with schema_context(committed_world.workspace_a.schema_name):
        one = _credential("one", first.base_url)
        aliases.alias_save(
            access=access, name="smart", targets=[TargetSpec("openai_compatible", "m1", one.pk)]
        )
        assert gateway_complete(model="smart", request=REQUEST).cost_usd == 0  # unpriced

        price = ModelPrice.objects.create(
            provider="openai_compatible",
            model="m1",
            input_per_mtok=Decimal("1000"),
            output_per_mtok=Decimal("1000"),
        )
        priced = gateway_complete(model="smart", request=REQUEST)
        assert priced.cost_usd > 0
        price.output_per_mtok = Decimal("2000")
        price.save()
        assert gateway_complete(model="smart", request=REQUEST).cost_usd > priced.cost_usd

        budgets.budget_set(access=access, monthly_cap_usd=Decimal("0.01"))
        with pytest.raises(budgets.BudgetExceeded):
            gateway_complete(model="smart", request=REQUEST)
        assert UsageRecord.objects.filter(outcome="ok").count() == 3
    assert len(first.requests) == 3  # the refused call never reached the server


def test_the_plan_view_is_kept_until_the_plan_row_or_a_plan_changes_not_on_run_starts(
    committed_world: World, servers: tuple[FakeOpenAI, FakeOpenAI], settings: Any
) -> None:
    """Billing's plan view (allowance, read-only, metering) is read once per process; a run
    start (which only counts) keeps it; a plan change, a read-only workspace or a plan's new
    allowance is seen by the very next call."""
    settings.BILLING_QUOTAS = True
    first, _ = servers
    workspace = committed_world.workspace_a
    ModelPrice.objects.update_or_create(
        provider="openai_compatible",
        model="m1",
        defaults={"input_per_mtok": Decimal(1), "output_per_mtok": Decimal(1)},
    )
    access = access_of(committed_world.owner, workspace)
    with schema_context(workspace.schema_name):
        one = _credential("one", first.base_url)
        aliases.alias_save(
            access=access, name="smart", targets=[TargetSpec("openai_compatible", "m1", one.pk)]
        )
        gateway_complete(model="smart", request=REQUEST)
        run_reserve(workspace_id=workspace.pk)  # counts runs: the view is kept
        with CaptureQueriesContext(connection) as queries:
            gateway_complete(model="smart", request=REQUEST)
        assert "billing_workspaceplan" not in " ".join(q["sql"] for q in queries.captured_queries)

        row = WorkspacePlan.objects.get(workspace=workspace)
        row.status = WorkspacePlan.Status.READ_ONLY
        row.save(update_fields=["status", "updated_at"])
        with pytest.raises(BudgetExceeded, match="Runs are paused"):
            gateway_complete(model="smart", request=REQUEST)

        row.status = WorkspacePlan.Status.ACTIVE
        row.save(update_fields=["status", "updated_at"])
        plan = row.plan
        plan.included_ai_spend_usd = Decimal(0)  # a staff edit of the plan itself
        plan.save()
        with pytest.raises(BudgetExceeded, match="Refused before calling"):
            gateway_complete(model="smart", request=REQUEST)
    assert len(first.requests) == 2
