from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents import services
from agents.models import AgentRun, UsageRecord
from agents.runs.executor import execute_run
from billing.models import ModelPrice
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.django_db


def _url(slug: str = "alpha") -> str:
    return reverse("usage", kwargs={"workspace_slug": slug})


@pytest.fixture
def spent(world: World) -> AgentRun:
    """One agent run priced at $1 per million tokens in and out."""
    ModelPrice.objects.create(
        provider="offline", model="priced", input_per_mtok=Decimal(1), output_per_mtok=Decimal(1)
    )
    with schema_context(world.workspace_a.schema_name):
        access = access_of(world.owner, world.workspace_a)
        agent = services.agent_create(
            access=access, name="Summariser", model="offline:priced", tools=["calculator"]
        )
        run = services.agent_run_start(access=access, agent_id=agent.pk, input="What is 2*21?")
        execute_run(run.pk)
        run.refresh_from_db()
        return run


def test_ledger_rows_belong_to_the_run_and_agent(world: World, spent: AgentRun) -> None:
    with schema_context(world.workspace_a.schema_name):
        rows = list(UsageRecord.objects.values_list("agent_id", "run_id"))
        total = sum(UsageRecord.objects.values_list("cost_usd", flat=True))
    assert rows == [(spent.agent_id, spent.pk)] * 2  # tool call + final answer
    assert total == spent.cost_usd > 0


def test_usage_page_shows_totals_by_model_and_agent(
    world: World, member_client: Client, spent: AgentRun
) -> None:
    response = member_client.get(_url())
    html = response.content.decode()
    report = response.context["report"]
    assert response.status_code == 200
    assert report.totals["calls"] == 2
    assert report.totals["cost"] == spent.cost_usd
    assert [r["agent"] for r in report.by_agent] == ["Summariser"]
    assert report.by_model[0]["model"] == "priced"
    assert len(response.context["bars"]) == 30
    assert response.context["bars"][-1]["height"] == 100
    assert "Summariser" in html
    assert "<svg" in html


def test_usage_csv_export_has_a_row_per_day_model_and_agent(
    world: World, owner_client: Client, spent: AgentRun
) -> None:
    response = owner_client.get(_url(), {"format": "csv"})
    assert response["Content-Type"] == "text/csv"
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:3] == ["day", "provider", "model"]
    assert len(rows) == 2
    assert rows[1][1:5] == ["offline", "priced", str(spent.agent_id), "2"]
    assert Decimal(rows[1][-1]) == spent.cost_usd


def test_usage_is_per_workspace_and_outsiders_get_404(
    world: World, spent: AgentRun, outsider_client: Client
) -> None:
    assert outsider_client.get(_url()).status_code == 404
    assert outsider_client.get(_url(), {"format": "csv"}).status_code == 404
    own = outsider_client.get(_url("bravo"))
    assert own.context["report"].totals["calls"] == 0


def test_usage_page_query_count_is_bounded(
    world: World, owner_client: Client, spent: AgentRun, django_assert_max_num_queries
) -> None:
    # Session, user, membership, switcher, four aggregates, agent names, budget, month spend: each
    # preceded by
    # django-tenants' SET search_path. The number does not depend on how many calls there were.
    owner_client.get(_url())
    with django_assert_max_num_queries(24):
        owner_client.get(_url())


def test_calls_outside_agents_are_labelled_and_free_periods_say_so(
    world: World, owner_client: Client
) -> None:
    from agents.gateway.calls import gateway_complete
    from agents.providers.base import ChatRequest, Message

    with schema_context(world.workspace_a.schema_name):
        gateway_complete(
            model="offline:free",
            request=ChatRequest(model="", messages=(Message(role="user", content="hi"),)),
        )
    response = owner_client.get(_url())
    assert [r["agent"] for r in response.context["report"].by_agent] == ["Direct API calls"]
    assert "No spend in this period" in response.content.decode()
