"""The gateway reads a workspace's spend from a Redis figure kept beside the ledger (committed
rows only, so these tests commit): the plan's cap still refuses the first call that could
overrun, the figure equals the ledger after every call, and with Redis down the ledger is read
and the cap still holds."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from django_tenants.utils import schema_context

from agents.gateway.budgets import BudgetExceeded, max_cost
from agents.gateway.calls import gateway_complete
from agents.gateway.spend import ledger_spend_since, spend_since
from agents.models import UsageRecord
from agents.providers.base import ChatRequest, Message
from billing import quotas
from billing.plans import workspace_plan
from tests.fakes import FakeOpenAI
from tests.helpers.agents import register_fake_model
from tests.helpers.personas import World

pytestmark = pytest.mark.django_db(transaction=True)

REQUEST = ChatRequest(model="", max_tokens=50, messages=(Message(role="user", content="Hi"),))
# $3 / $15 per million tokens (register_fake_model): 2000 in + 40 out = $0.0066 a call.
USAGE = {"prompt_tokens": 2000, "completion_tokens": 40}


@pytest.fixture
def capped(committed_world: World, settings: Any, fake_openai: FakeOpenAI) -> str:
    """Workspace A on a plan that includes $0.05 of AI spend and refuses more."""
    settings.BILLING_QUOTAS = True
    plan = workspace_plan(workspace=committed_world.workspace_a).plan
    plan.included_ai_spend_usd, plan.allows_overage = Decimal("0.05"), False
    plan.save(update_fields=["included_ai_spend_usd", "allows_overage"])
    with schema_context(committed_world.workspace_a.schema_name):
        return register_fake_model(fake_openai.base_url)


def _period_start(world: World) -> datetime:
    view = quotas.plan_view(schema_name=world.workspace_a.schema_name)
    assert view is not None
    return view.period_start


def _calls_until_refused(world: World, model: str, fake_openai: FakeOpenAI, *, check: bool) -> int:
    start = _period_start(world)
    for answered in range(20):
        fake_openai.queue(text="ok", usage=USAGE)
        try:
            gateway_complete(model=model, request=REQUEST)
        except BudgetExceeded:
            return answered
        if check:
            assert spend_since(start) == ledger_spend_since(start)
    pytest.fail("the plan's cap never refused a call")


def test_the_cap_refuses_the_first_call_that_could_overrun(
    committed_world: World, capped: str, fake_openai: FakeOpenAI
) -> None:
    with schema_context(committed_world.workspace_a.schema_name):
        answered = _calls_until_refused(committed_world, capped, fake_openai, check=True)
        spent = ledger_spend_since(_period_start(committed_world))
        worst = max_cost("openai_compatible", "m1", REQUEST)
    assert answered == 8  # 8 x $0.0066 spent; a 9th could cost $0.000753 more: past $0.05
    assert spent == Decimal("0.0528")
    assert spent - Decimal("0.0066") + worst <= Decimal("0.05") < spent + worst
    assert len(fake_openai.requests) == 8  # the refused call never reached the model server


def test_with_redis_down_the_ledger_is_read_and_the_cap_holds(
    committed_world: World, capped: str, fake_openai: FakeOpenAI, settings: Any
) -> None:
    with schema_context(committed_world.workspace_a.schema_name):
        UsageRecord.objects.create(
            kind="openai_compatible", model="m1", outcome="ok", cost_usd=Decimal("0.04")
        )
        settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
        answered = _calls_until_refused(committed_world, capped, fake_openai, check=False)
    assert answered == 2  # $0.04 + 2 x $0.0066: a third call could pass $0.05
