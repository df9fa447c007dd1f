"""The usage page's cache figures, from real ledger rows: an agent with the response cache on
answers the same question twice (the second time from the cache), and the page shows the hit
rate and the money saved without the cache hit counting as a model call or as spend."""

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
def two_runs(world: World) -> tuple[AgentRun, AgentRun]:
    """The same question twice to a priced agent with the cache on."""
    ModelPrice.objects.create(
        provider="offline", model="priced", input_per_mtok=Decimal(1), output_per_mtok=Decimal(2)
    )
    with schema_context(world.workspace_a.schema_name):
        access = access_of(world.owner, world.workspace_a)
        agent = services.agent_create(
            access=access, name="FAQ bot", model="offline:priced", cache_enabled=True
        )
        runs = []
        for _ in range(2):
            run = services.agent_run_start(
                access=access, agent_id=agent.pk, input="When are you open on Sundays?"
            )
            execute_run(run.pk)
            run.refresh_from_db()
            runs.append(run)
    return runs[0], runs[1]


def test_the_second_run_is_a_cache_hit_in_the_ledger(
    world: World, two_runs: tuple[AgentRun, AgentRun]
) -> None:
    first, second = two_runs
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert first.cost_usd > 0
    assert second.cost_usd == 0
    assert second.output == first.output
    with schema_context(world.workspace_a.schema_name):
        rows = list(
            UsageRecord.objects.order_by("id").values_list(
                "kind", "outcome", "cost_usd", "saved_usd"
            )
        )
    assert rows == [
        ("offline", "ok", first.cost_usd, Decimal(0)),
        ("cache", "cached", Decimal(0), first.cost_usd),
    ]


def test_usage_page_shows_hit_rate_and_money_saved(
    member_client: Client, two_runs: tuple[AgentRun, AgentRun]
) -> None:
    first, _ = two_runs
    response = member_client.get(_url())
    report = response.context["report"]
    html = response.content.decode()

    assert report.totals["calls"] == 1  # the cache hit is not a model call
    assert report.totals["cached"] == 1
    assert report.totals["cost"] == first.cost_usd  # spend is what was paid, once
    assert report.totals["saved"] == first.cost_usd
    assert report.cache_hit_rate == 0.5
    assert "Cache hit rate" in html
    assert "50.0 %" in html
    assert f"1 of 2 answers from the cache · ${first.cost_usd:.4f} saved" in html
    assert "none reported as wrong" in html


def test_cache_rows_appear_as_provider_cache_and_never_as_spend(
    owner_client: Client, two_runs: tuple[AgentRun, AgentRun]
) -> None:
    first, _ = two_runs
    report = owner_client.get(_url()).context["report"]
    by_model = {(r["kind"], r["model"]): r for r in report.by_model}
    priced = by_model[("offline", "priced")]
    cached = by_model[("cache", "offline:priced")]
    assert (priced["calls"], priced["cached"], priced["cost"]) == (1, 0, first.cost_usd)
    assert (cached["calls"], cached["cached"], cached["cost"]) == (0, 1, Decimal(0))
    assert cached["saved"] == first.cost_usd
    [agent_row] = report.by_agent
    assert agent_row["agent"] == "FAQ bot"
    assert (agent_row["calls"], agent_row["cached"], agent_row["cost"]) == (1, 1, first.cost_usd)
    # The chart is spend per day: the cache hit adds nothing to it.
    assert sum(day["cost"] for day in report.days) == first.cost_usd


def test_csv_has_the_cache_row_with_its_savings_and_zero_cost(
    owner_client: Client, two_runs: tuple[AgentRun, AgentRun]
) -> None:
    first, _ = two_runs
    response = owner_client.get(_url(), {"format": "csv"})
    header, *rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert header[-3:] == ["cached_answers", "saved_usd", "cost_usd"]
    by_provider = {row[1]: dict(zip(header, row, strict=True)) for row in rows}
    assert set(by_provider) == {"offline", "cache"}
    cache_row = by_provider["cache"]
    assert cache_row["model"] == "offline:priced"
    assert (cache_row["calls"], cache_row["cached_answers"]) == ("0", "1")
    assert Decimal(cache_row["saved_usd"]) == first.cost_usd
    assert Decimal(cache_row["cost_usd"]) == 0
    assert Decimal(by_provider["offline"]["cost_usd"]) == first.cost_usd
    assert sum(Decimal(r["cost_usd"]) for r in by_provider.values()) == first.cost_usd


def test_without_cache_hits_the_page_says_so_and_adds_no_columns(owner_client: Client) -> None:
    response = owner_client.get(_url())
    html = response.content.decode()
    assert response.context["report"].cache_hit_rate is None
    assert "No answers from the cache yet" in html
    assert "From cache" not in html


def test_cache_figures_are_per_workspace(
    outsider_client: Client, two_runs: tuple[AgentRun, AgentRun]
) -> None:
    assert outsider_client.get(_url()).status_code == 404
    report = outsider_client.get(_url("bravo")).context["report"]
    assert report.totals["cached"] == 0
    assert report.totals["saved"] == 0
