"""The usage ledger against what the providers report, through the real SDKs and the loopback
fakes: every attempt is a row with the provider's own counts to the token (successful, failed,
retried, fallen back, broken off mid-stream), counts the provider did not report are estimated
and marked so, embedding requests are rows too, and "tokens in" is one number everywhere."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents import services
from agents.chat import services as chat_services
from agents.chat.answering import turn_answer
from agents.gateway.breaker import CircuitBreaker
from agents.gateway.calls import GatewayError, gateway_complete, gateway_stream
from agents.models import (
    AliasTarget,
    ConversationTurn,
    KnowledgeBase,
    ModelAlias,
    ProviderCredential,
    UsageRecord,
)
from agents.providers.base import ChatRequest, Message, StreamEvent, TextDelta, Usage
from agents.runs.executor import execute_run
from billing.models import ModelPrice
from billing.pricing import usage_cost
from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.django_db

PRICE = {"input_per_mtok": Decimal(3), "output_per_mtok": Decimal(15)}
# What each fake reports for one call, in the API's own keys, and what that is for us.
ANTHROPIC_USAGE = {
    "input_tokens": 120,
    "output_tokens": 30,
    "cache_read_input_tokens": 40,
    "cache_creation_input_tokens": 10,
}
ANTHROPIC_LEDGER = Usage(
    input_tokens=120, output_tokens=30, cached_input_tokens=40, cache_write_tokens=10
)
OPENAI_USAGE = {"prompt_tokens": 150, "completion_tokens": 30, "cached_tokens": 40}
OPENAI_LEDGER = Usage(input_tokens=110, output_tokens=30, cached_input_tokens=40)


@pytest.fixture(autouse=True)
def _fresh_breakers(settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # the fakes listen on loopback
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    prefix = django_settings.CACHES["default"]["KEY_PREFIX"]
    for key in client.scan_iter(f"{prefix}:breaker:*"):
        client.delete(key)


def _request(text: str = "Hello there") -> ChatRequest:
    return ChatRequest(model="", messages=(Message(role="user", content=text),))


def _target(alias: ModelAlias, position: int, kind: str, base_url: str) -> None:
    credential = ProviderCredential(name=f"{kind}-{position}", kind=kind, base_url=base_url)
    credential.set_api_key(f"sk-{kind}-{position}-0000")
    credential.save()
    AliasTarget.objects.create(
        alias=alias, position=position, kind=kind, model=f"{kind}-model", credential=credential
    )
    ModelPrice.objects.get_or_create(provider=kind, model=f"{kind}-model", defaults=PRICE)


def _alias(*targets: tuple[str, str]) -> str:
    alias = ModelAlias.objects.create(name="smart")
    for position, (kind, base_url) in enumerate(targets):
        _target(alias, position, kind, base_url)
    return "smart"


def _rows() -> list[UsageRecord]:
    return list(UsageRecord.objects.order_by("id"))


def _usage_of(row: UsageRecord) -> Usage:
    return Usage(
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cached_input_tokens=row.cached_input_tokens,
        cache_write_tokens=row.cache_write_tokens,
        estimated=row.estimated,
    )


def _priced(usage: Usage) -> Decimal:
    return usage_cost(usage, ModelPrice(provider="any", model="any", **PRICE).as_price())


@pytest.fixture(params=["anthropic", "openai"])
def provider(
    request: pytest.FixtureRequest, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI
) -> tuple[str, FakeAnthropic | FakeOpenAI, dict[str, int], Usage]:
    if request.param == "anthropic":
        return "anthropic", fake_anthropic, ANTHROPIC_USAGE, ANTHROPIC_LEDGER
    return "openai", fake_openai, OPENAI_USAGE, OPENAI_LEDGER


def _stream(model: str) -> tuple[list[str], Any]:
    seen: list[str] = []

    def on_event(event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            seen.append(event.text)

    return seen, gateway_stream(model=model, request=_request(), on_event=on_event)


# --- successful, failed, retried and fallen-back calls: the provider's counts, to the token


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
def test_a_successful_call_is_one_row_with_the_providers_counts(
    workspace_a: Any, provider: Any, streamed: bool
) -> None:
    kind, fake, reported, expected = provider
    fake.queue(text="All good.", usage=reported)
    with schema_context(workspace_a.schema_name):
        model = _alias((kind, fake.base_url))
        outcome = (
            _stream(model)[1] if streamed else gateway_complete(model=model, request=_request())
        )
        rows = _rows()
    assert [(r.outcome, r.attempt) for r in rows] == [("ok", 1)]
    assert _usage_of(rows[0]) == expected
    assert outcome.result.usage == expected
    assert rows[0].cost_usd == outcome.cost_usd == _priced(expected) > 0


def test_failed_attempts_are_rows_with_nothing_used(
    workspace_a: Any, provider: Any, settings: Any
) -> None:
    settings.GATEWAY_MAX_ATTEMPTS = 2
    settings.GATEWAY_BACKOFF_BASE_SECONDS = 0.01
    kind, fake, _, _ = provider
    fake.queue_error(500)
    fake.queue_error(500)
    with schema_context(workspace_a.schema_name):
        model = _alias((kind, fake.base_url))
        with pytest.raises(GatewayError):
            gateway_complete(model=model, request=_request())
        rows = _rows()
    assert [(r.outcome, r.attempt) for r in rows] == [("error", 1), ("error", 2)]
    assert all(_usage_of(r) == Usage() and r.cost_usd == 0 for r in rows)


def test_a_retried_call_has_a_row_per_attempt_and_bills_the_one_that_answered(
    workspace_a: Any, provider: Any, settings: Any
) -> None:
    settings.GATEWAY_BACKOFF_BASE_SECONDS = 0.01
    kind, fake, reported, expected = provider
    fake.queue_error(429)
    fake.queue(text="Second time.", usage=reported)
    with schema_context(workspace_a.schema_name):
        _seen, outcome = _stream(_alias((kind, fake.base_url)))
        rows = _rows()
    assert [(r.outcome, r.attempt) for r in rows] == [("error", 1), ("ok", 2)]
    assert _usage_of(rows[0]) == Usage()
    assert _usage_of(rows[1]) == expected
    assert sum(r.cost_usd for r in rows) == outcome.cost_usd == _priced(expected)


@pytest.mark.parametrize("first", ["anthropic", "openai"])
def test_a_fallen_back_call_bills_the_second_target(
    workspace_a: Any,
    fake_anthropic: FakeAnthropic,
    fake_openai: FakeOpenAI,
    settings: Any,
    first: str,
) -> None:
    settings.GATEWAY_MAX_ATTEMPTS = 1
    fakes = {"anthropic": fake_anthropic, "openai": fake_openai}
    second = "openai" if first == "anthropic" else "anthropic"
    reported = {"anthropic": ANTHROPIC_USAGE, "openai": OPENAI_USAGE}[second]
    expected = {"anthropic": ANTHROPIC_LEDGER, "openai": OPENAI_LEDGER}[second]
    fakes[first].queue_error(529 if first == "anthropic" else 503)
    fakes[second].queue(text="From the fallback.", usage=reported)
    with schema_context(workspace_a.schema_name):
        model = _alias((first, fakes[first].base_url), (second, fakes[second].base_url))
        outcome = gateway_complete(model=model, request=_request())
        rows = _rows()
    assert [(r.kind, r.outcome, r.fallback) for r in rows] == [
        (first, "error", False),
        (second, "ok", True),
    ]
    assert _usage_of(rows[0]) == Usage()
    assert _usage_of(rows[1]) == expected
    assert outcome.fallback
    assert outcome.cost_usd == rows[1].cost_usd == _priced(expected)


# --- a stream that fails after its first token


def test_anthropic_overloaded_mid_stream_is_a_priced_row_a_breaker_failure_and_final(
    workspace_a: Any, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI, settings: Any
) -> None:
    settings.GATEWAY_BREAKER_THRESHOLD = 1
    fake_anthropic.queue_stream_error(
        "The first half of an answer",
        error_type="overloaded_error",
        usage={"input_tokens": 55, "cache_read_input_tokens": 5},
    )
    with schema_context(workspace_a.schema_name):
        model = _alias(("anthropic", fake_anthropic.base_url), ("openai", fake_openai.base_url))
        seen: list[str] = []
        with pytest.raises(GatewayError) as excinfo:
            gateway_stream(
                model=model,
                request=_request(),
                on_event=lambda e: seen.append(e.text) if isinstance(e, TextDelta) else None,
            )
        rows = _rows()
        credential = ProviderCredential.objects.get(kind="anthropic")
    breaker_key = f"{workspace_a.schema_name}:{credential.pk}:anthropic-model"
    assert "".join(seen) == "The first half of an answer"
    # A readable message, never the provider's error body.
    assert excinfo.value.message == (
        "The answer stopped part-way: Anthropic is overloaded; try again in a moment."
    )
    assert "{" not in excinfo.value.message
    # One attempt, recorded with the counts Anthropic reported and the output it streamed.
    assert len(rows) == 1
    assert rows[0].outcome == "error"
    assert (rows[0].input_tokens, rows[0].cached_input_tokens) == (55, 5)
    assert rows[0].output_tokens > 0
    assert rows[0].estimated
    assert rows[0].cost_usd == _priced(_usage_of(rows[0])) > 0
    # Not retried, not sent to the fallback: the user saw half of this answer.
    assert len(fake_anthropic.requests) == 1
    assert len(fake_openai.requests) == 0
    # And it counts against the target's breaker like any failure.
    assert not CircuitBreaker(breaker_key).allows_call()


def test_anthropic_overloaded_before_the_first_token_is_retried(
    workspace_a: Any, fake_anthropic: FakeAnthropic, settings: Any
) -> None:
    settings.GATEWAY_BACKOFF_BASE_SECONDS = 0.01
    fake_anthropic.queue_stream_error("", usage={"input_tokens": 55})
    fake_anthropic.queue(text="Fine now.", usage=ANTHROPIC_USAGE)
    with schema_context(workspace_a.schema_name):
        seen, outcome = _stream(_alias(("anthropic", fake_anthropic.base_url)))
        rows = _rows()
    assert "".join(seen) == "Fine now."
    assert [(r.outcome, r.attempt) for r in rows] == [("error", 1), ("ok", 2)]
    assert _usage_of(rows[0]) == Usage(input_tokens=55)  # what message_start reported
    assert _usage_of(rows[1]) == ANTHROPIC_LEDGER
    # The call's usage and cost are its rows' sum: the failed attempt's input is in both.
    assert outcome.result.usage.tokens_in == rows[0].input_tokens + ANTHROPIC_LEDGER.tokens_in
    assert outcome.cost_usd == rows[0].cost_usd + rows[1].cost_usd


@pytest.mark.parametrize("how", ["error chunk", "cut"])
def test_an_openai_stream_that_breaks_after_text_is_a_row_with_estimated_tokens(
    workspace_a: Any, fake_openai: FakeOpenAI, how: str
) -> None:
    if how == "cut":
        fake_openai.queue_stream_cut("Half an answer and then")
    else:
        fake_openai.queue_stream_error("Half an answer and then")
    with schema_context(workspace_a.schema_name):
        with pytest.raises(GatewayError, match="stopped part-way") as excinfo:
            _stream(_alias(("openai", fake_openai.base_url)))
        rows = _rows()
    assert "{" not in excinfo.value.message
    assert [(r.outcome, r.estimated) for r in rows] == [("error", True)]
    assert rows[0].input_tokens > 0
    assert rows[0].output_tokens > 0
    assert rows[0].cost_usd > 0
    assert len(fake_openai.requests) == 1


def test_a_chat_turn_cut_off_by_an_overloaded_provider_says_so_in_words(
    world: World, member_client: Client, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.queue_stream_error("Partly", usage={"input_tokens": 20})
    with schema_context(world.workspace_a.schema_name):
        model = _alias(("anthropic", fake_anthropic.base_url))
        access = access_of(world.member, world.workspace_a)
        agent = services.agent_create(
            access=access_of(world.owner, world.workspace_a), name="Helper", model=model
        )
        conversation = chat_services.conversation_start(
            access=access, agent_id=agent.pk, question="Tell me something"
        )
        turn = conversation.turns.get()
        assert turn_answer(turn.pk) == ConversationTurn.Status.FAILED
        turn.refresh_from_db()
        rows = _rows()
    url = reverse(
        "conversation_detail",
        kwargs={"workspace_slug": "alpha", "conversation_id": conversation.pk},
    )
    page = member_client.get(url).content.decode()
    assert "Anthropic is overloaded; try again in a moment." in page
    assert "overloaded_error" not in page
    assert "{&#x27;type&#x27;" not in page
    assert [(r.outcome, r.input_tokens, r.agent_id) for r in rows] == [("error", 20, agent.pk)]
    # The failed turn shows what it cost, as the ledger does, not 0 tokens and $0.
    assert (turn.input_tokens, turn.output_tokens, turn.cost_usd) == (
        20,
        rows[0].output_tokens,
        rows[0].cost_usd,
    )
    assert rows[0].cost_usd > 0
    assert 'title="Input tokens">20 in' in page


def test_a_run_that_fails_after_a_paid_call_shows_what_it_cost(
    world: World, owner_client: Client, fake_openai: FakeOpenAI, settings: Any
) -> None:
    settings.GATEWAY_MAX_ATTEMPTS = 1
    fake_openai.queue(
        tool_calls=[("calculator", {"expression": "6*7"})],
        usage={"prompt_tokens": 90, "completion_tokens": 12, "cached_tokens": 30},
    )
    fake_openai.queue_error(500)
    with schema_context(world.workspace_a.schema_name):
        access = access_of(world.owner, world.workspace_a)
        model = _alias(("openai", fake_openai.base_url))
        agent = services.agent_create(access=access, name="Calc", model=model, tools=["calculator"])
        run = services.agent_run_start(access=access, agent_id=agent.pk, input="6 times 7?")
        execute_run(run.pk)
        run.refresh_from_db()
        rows = _rows()
    assert run.status == "failed"
    assert [r.outcome for r in rows] == ["ok", "error"]
    assert (run.input_tokens, run.output_tokens) == (90, 12)  # 60 uncached + 30 cached
    assert run.cost_usd == sum(r.cost_usd for r in rows) > 0
    page = owner_client.get(
        reverse(
            "agent_run_status",
            kwargs={"workspace_slug": "alpha", "agent_id": agent.pk, "run_id": run.pk},
        )
    ).content.decode()
    assert "90 tokens in" in page


# --- a provider that reports no usage


def test_a_stream_without_usage_is_estimated_and_marked_on_the_usage_page_and_csv(
    world: World, owner_client: Client
) -> None:
    with FakeOpenAI(stream_usage=False) as fake:
        fake.queue(text="A local model answered this without counting anything.")
        with schema_context(world.workspace_a.schema_name):
            _seen, outcome = _stream(_alias(("openai_compatible", fake.base_url)))
            rows = _rows()
    assert fake.last_request.body["stream_options"] == {"include_usage": True}  # asked anyway
    assert [(r.outcome, r.estimated) for r in rows] == [("ok", True)]
    assert rows[0].input_tokens > 0
    assert rows[0].output_tokens > 0
    assert outcome.result.usage.estimated
    assert outcome.cost_usd == rows[0].cost_usd > 0

    url = reverse("usage", kwargs={"workspace_slug": "alpha"})
    page = owner_client.get(url).content.decode()
    assert "1 call with estimated counts" in page
    assert "estimated</span>" in page
    export = list(
        csv.DictReader(io.StringIO(owner_client.get(url, {"format": "csv"}).content.decode()))
    )
    assert [(r["provider"], r["estimated_rows"]) for r in export] == [("openai_compatible", "1")]
    assert int(export[0]["input_tokens"]) == rows[0].input_tokens


# --- an attempt in flight is already in the ledger


def test_an_attempt_is_in_the_ledger_as_pending_while_it_waits_for_the_provider(
    world: World, owner_client: Client, fake_anthropic: FakeAnthropic
) -> None:
    """A worker killed while waiting leaves this row behind: the paid call stays visible."""
    fake_anthropic.queue(text="one two three", usage=ANTHROPIC_USAGE)
    during: list[tuple[str, int]] = []
    with schema_context(world.workspace_a.schema_name):
        model = _alias(("anthropic", fake_anthropic.base_url))

        def on_event(event: StreamEvent) -> None:
            if not during:
                during.extend(UsageRecord.objects.values_list("outcome", "input_tokens"))

        gateway_stream(model=model, request=_request(), on_event=on_event)
        after = list(UsageRecord.objects.values_list("outcome", "input_tokens"))
        UsageRecord.objects.create(kind="anthropic", model="anthropic-model", outcome="pending")
    assert during == [("pending", 0)]
    assert after == [("ok", 120)]
    page = owner_client.get(reverse("usage", kwargs={"workspace_slug": "alpha"})).content.decode()
    assert "1 with no recorded outcome" in page


# --- embeddings


def test_knowledge_ingestion_with_provider_embeddings_writes_ledger_rows(
    world: World, fake_openai: FakeOpenAI, settings: Any, owner_client: Client
) -> None:
    settings.EMBEDDER = "openai"
    settings.LLM_PLATFORM_BASE_URLS = {"openai": fake_openai.base_url}
    settings.LLM_PLATFORM_KEYS = {"openai": "sk-platform-0000"}
    ModelPrice.objects.create(
        provider="openai",
        model="text-embedding-3-small",
        input_per_mtok=Decimal(100),  # far above the real price, to see it in 6 decimals
        output_per_mtok=Decimal(0),
    )
    from agents.knowledge import services as knowledge

    fake_openai.queue_error(503, endpoint="embeddings")  # retried: a row of its own, $0
    with schema_context(world.workspace_a.schema_name):
        access = access_of(world.owner, world.workspace_a)
        base = knowledge.knowledge_base_create(access=access, name="Handbook")
        document = knowledge.document_create(
            knowledge_base=base,
            filename="refunds.txt",
            data=b"Refunds are paid within 14 days of the request.",
        )
        knowledge.document_ingest(document_id=document.pk)
        rows = list(UsageRecord.objects.filter(purpose="embedding"))
        assert KnowledgeBase.objects.get(pk=base.pk).embedder.startswith("openai")
    answered = fake_openai.requests_to("embeddings")[-1]
    reported = _embedding_tokens(answered.body["input"])
    rows.sort(key=lambda r: r.pk)
    assert [(r.kind, r.model, r.outcome, r.attempt) for r in rows] == [
        ("openai", "text-embedding-3-small", "error", 1),
        ("openai", "text-embedding-3-small", "ok", 2),
    ]
    assert (rows[0].input_tokens, rows[0].cost_usd) == (0, 0)
    assert rows[1].input_tokens == reported > 0
    assert not rows[1].estimated
    assert rows[1].cost_usd > 0
    report = owner_client.get(reverse("usage", kwargs={"workspace_slug": "alpha"}))
    assert report.context["report"].totals["embeddings"] == 1
    assert report.context["report"].totals["calls"] == 0  # not a model answer


def _embedding_tokens(inputs: list[str]) -> int:
    from tests.fakes.server import count_tokens

    return sum(max(1, count_tokens(text)) for text in inputs)


# --- one definition of "tokens in"


def _tokens_in(html: str, pattern: str) -> int:
    found = re.search(pattern, html)
    assert found is not None, pattern
    return int(found.group(1).replace(",", ""))


def test_run_chat_and_usage_pages_show_the_same_tokens_in_for_the_same_call(
    world: World, owner_client: Client, fake_anthropic: FakeAnthropic
) -> None:
    expected = ANTHROPIC_LEDGER.tokens_in  # 120 uncached + 40 cache reads + 10 cache writes
    fake_anthropic.queue(text="Run answer.", usage=ANTHROPIC_USAGE)
    fake_anthropic.queue(text="Chat answer.", usage=ANTHROPIC_USAGE)
    with schema_context(world.workspace_a.schema_name):
        access = access_of(world.owner, world.workspace_a)
        model = _alias(("anthropic", fake_anthropic.base_url))
        agent = services.agent_create(access=access, name="Counter", model=model)
        run = services.agent_run_start(access=access, agent_id=agent.pk, input="Count")
        execute_run(run.pk)
        conversation = chat_services.conversation_start(
            access=access, agent_id=agent.pk, question="Count again"
        )
        turn_answer(conversation.turns.get().pk)
    run_page = owner_client.get(
        reverse(
            "agent_run_status",
            kwargs={"workspace_slug": "alpha", "agent_id": agent.pk, "run_id": run.pk},
        )
    ).content.decode()
    chat_page = owner_client.get(
        reverse(
            "conversation_detail",
            kwargs={"workspace_slug": "alpha", "conversation_id": conversation.pk},
        )
    ).content.decode()
    usage = owner_client.get(reverse("usage", kwargs={"workspace_slug": "alpha"}))
    assert _tokens_in(run_page, r"([\d,]+) tokens in") == expected
    assert _tokens_in(chat_page, r'title="Input tokens">([\d,]+) in') == expected
    assert usage.context["report"].totals["input_tokens"] == 2 * expected
    assert usage.context["report"].by_agent[0]["input_tokens"] == 2 * expected
    csv_export = owner_client.get(
        reverse("usage", kwargs={"workspace_slug": "alpha"}), {"format": "csv"}
    )
    export = list(csv.DictReader(io.StringIO(csv_export.content.decode())))
    assert [int(r["input_tokens"]) for r in export] == [2 * expected]
    assert [int(r["cache_write_tokens"]) for r in export] == [20]
    assert "20 written to it" in usage.content.decode()


def test_a_workflow_agent_step_that_fails_after_a_paid_call_charges_the_run(
    world: World, fake_openai: FakeOpenAI, settings: Any
) -> None:
    from tests.helpers.workflows import drain, make_workflow
    from workflows import runs as workflow_runs
    from workflows.models import WorkflowRun

    settings.GATEWAY_MAX_ATTEMPTS = 1
    fake_openai.queue(
        tool_calls=[("calculator", {"expression": "6*7"})],
        usage={"prompt_tokens": 90, "completion_tokens": 12},
    )
    fake_openai.queue_error(500)
    with schema_context(world.workspace_a.schema_name):
        access = access_of(world.owner, world.workspace_a)
        model = _alias(("openai", fake_openai.base_url))
        agent = services.agent_create(access=access, name="Calc", model=model, tools=["calculator"])
        step = {"agent_id": agent.pk, "agent": "Calc", "prompt": "6 times 7?"}
        workflow = make_workflow(
            {
                "schema_version": 1,
                "steps": [{"id": "calc", "type": "agent", "config": step}],
                "edges": [],
            }
        )
        run = workflow_runs.run_start(
            workflow=workflow, inputs={}, trigger=WorkflowRun.TriggerKind.MANUAL
        )
        drain()
        run.refresh_from_db()
        rows = _rows()
    assert run.status == "failed"
    assert [r.outcome for r in rows] == ["ok", "error"]
    assert (run.input_tokens, run.output_tokens) == (90, 12)
    assert run.cost_usd == sum(r.cost_usd for r in rows) > 0


def test_a_run_refused_by_its_cost_cap_after_a_paid_call_shows_what_it_cost(
    world: World, fake_openai: FakeOpenAI
) -> None:
    # The first call is cheap at worst (100 output tokens) but reports a long prompt: after it,
    # the run's cap refuses the next turn of the tool loop before anything is sent.
    fake_openai.queue(
        tool_calls=[("calculator", {"expression": "6*7"})],
        usage={"prompt_tokens": 10_000, "completion_tokens": 12},
    )
    with schema_context(world.workspace_a.schema_name):
        access = access_of(world.owner, world.workspace_a)
        model = _alias(("openai", fake_openai.base_url))
        agent = services.agent_create(
            access=access,
            name="Calc",
            model=model,
            tools=["calculator"],
            max_tokens=100,
            max_cost_per_run_usd=Decimal("0.01"),
        )
        run = services.agent_run_start(access=access, agent_id=agent.pk, input="6 times 7?")
        execute_run(run.pk)
        run.refresh_from_db()
        rows = _rows()
    assert run.status == "failed"
    assert "cost" in run.error.lower()
    assert [r.outcome for r in rows] == ["ok"]  # the refused call was never sent
    assert (run.input_tokens, run.output_tokens) == (10_000, 12)
    assert run.cost_usd == rows[0].cost_usd > Decimal("0.01")
