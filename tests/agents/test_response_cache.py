"""The response cache never answers a different question (agents/cache/responses.py,
cache_guard.py): what is in the key, the near-miss guard on every kind of near-miss, the semantic
tier and its model check, what is never stored, and "Wrong answer?" evicting the entry. The model
is the real `openai` SDK against the loopback FakeOpenAI."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents import services
from agents.cache import guard as cache_guard
from agents.cache import responses as cache
from agents.chat import services as chat_services
from agents.chat.answering import turn_answer
from agents.gateway.calls import UsageContext
from agents.knowledge.services import knowledge_base_create
from agents.models import (
    Agent,
    AgentRun,
    AgentVersion,
    CachedResponse,
    CacheReport,
    ConversationTurn,
    UsageRecord,
)
from agents.providers.base import Message
from agents.usage import usage_report
from tenants.models import Workspace
from tenants.permissions import Access
from tests.fakes import FakeOpenAI
from tests.helpers.agents import run_now
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.django_db

QUESTION = "How do I reset my password?"


def _faq(access: Access, model: str, **settings: object) -> Agent:
    return services.agent_create(access=access, name="FAQ", model=model, **settings)


def _store(version: AgentVersion, messages: list[Message], answer: str) -> None:
    cache.store(
        version,
        cache.cache_key(version, messages, user_id=None),
        messages,
        answer=answer,
        tool_steps=[],
        cost_usd=Decimal("0.01"),
        input_tokens=10,
        output_tokens=5,
    )


def _lookup(version: AgentVersion, messages: list[Message]) -> cache.CacheHit | None:
    key = cache.cache_key(version, messages, user_id=None)
    return cache.lookup(version, key, context=UsageContext(agent_id=version.agent_id))


# --- the exact tier's normal form ---------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("How do I reset my password?", "  how do I RESET my password"),
        ("Where’s my “invoice”?", 'where\'s my "invoice"'),
        ("Ｆｕｌｌ‐width text!", "full-width text"),
    ],
)
def test_normalising_erases_only_case_spacing_quotes_and_sentence_punctuation(
    first: str, second: str
) -> None:
    assert cache_guard.normalise(first) == cache_guard.normalise(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Is C++ supported?", "Is C# supported?"),
        ("Does it run on Python 3.11?", "Does it run on Python 311?"),
        ("Can the balance be -5?", "Can the balance be 5?"),
        ("I can't log in", "I can log in"),
        ("Is node.js supported?", "Is nodejs supported?"),
        ("Is 20% the fee?", "Is 20 the fee?"),
    ],
)
def test_normalising_keeps_everything_that_can_change_an_answer(first: str, second: str) -> None:
    assert cache_guard.normalise(first) != cache_guard.normalise(second)


def test_normalising_twice_changes_nothing() -> None:
    for text in ("  Hello,  World!! ", "“Quoted” (thing).", "C++ / C# … ok?"):
        once = cache_guard.normalise(text)
        assert cache_guard.normalise(once) == once


# --- the near-miss guard ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "first", "second"),
    [
        ("number", "Can I get a refund of $20?", "Can I get a refund of $200?"),
        ("number", "Is the trial 7 days long?", "Is the trial fourteen days long?"),
        ("number", "Why was I billed $5 instead of $9?", "Why was I billed $9 instead of $5?"),
        ("negation", "Can I cancel my order?", "Can't I cancel my order?"),
        ("negation", "Why does the job run when nothing changed?", "Why doesn't the job run?"),
        ("swap", "Do you ship to Canada?", "Do you ship from Canada?"),
        ("swap", "Switch my plan from monthly to yearly", "Switch my plan from yearly to monthly"),
        ("swap", "Migrate from Postgres to MySQL", "Migrate from MySQL to Postgres"),
        ("contrast", "How do I upgrade my plan?", "How do I downgrade my plan?"),
        ("contrast", "How do I turn on two-step login?", "How do I turn off two-step login?"),
        ("contrast", "How do I import contacts?", "How do I export contacts?"),
        ("contrast", "Is the repo public?", "Is the repo private?"),
        ("entity", "Do you accept payments in EUR?", "Do you accept payments in GBP?"),
        ("entity", "Can I deploy to AWS?", "Can I deploy to Azure?"),
        ("entity", "Do you ship to Germany?", "Do you ship to France?"),
        ("object", "How do I reset my password?", "How do I reset my API key?"),
        ("object", "How do I change my email?", "How do I change my username?"),
        ("object", "How do I download my invoice?", "How do I download my receipt?"),
        ("object", "How much sick leave do I get?", "How much parental leave do I get?"),
    ],
)
def test_the_guard_refuses_every_kind_of_near_miss(kind: str, first: str, second: str) -> None:
    assert cache_guard.near_miss(first, second) is not None, kind
    assert cache_guard.near_miss(second, first) is not None, kind  # symmetric


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("How do I reset my password?", "I forgot my password, how can I change it?"),
        ("How do I reset my password?", "hi! quick question: how can i reset my password"),
    ],
)
def test_the_guard_lets_a_rewording_through(first: str, second: str) -> None:
    assert cache_guard.near_miss(first, second) is None


# --- what is in the key -------------------------------------------------------------------


def test_everything_that_changes_the_answer_is_in_the_key(
    owner_access: Access, fake_model: str
) -> None:
    agent = _faq(owner_access, fake_model)
    v1 = agent.current_version
    assert v1 is not None
    base = cache.cache_key(v1, [Message(role="user", content=QUESTION)], user_id=1)
    variants = {
        "another question": cache.cache_key(
            v1, [Message(role="user", content="How do I reset my API key?")], user_id=1
        ),
        "another conversation context": cache.cache_key(
            v1,
            [
                Message(role="user", content="Tell me about the admin account"),
                Message(role="assistant", content="It is the owner's account."),
                Message(role="user", content=QUESTION),
            ],
            user_id=1,
        ),
    }
    for change in (
        {"tools": ["calculator"]},
        {"temperature": 0.9},
        {"model": "offline:demo"},
        {"output_schema": {"type": "object"}},
        {"system_prompt": "Answer in French."},
    ):
        updated = services.agent_update(access=owner_access, agent_id=agent.pk, **change)
        assert updated.current_version is not None
        variants[str(change)] = cache.cache_key(
            updated.current_version, [Message(role="user", content=QUESTION)], user_id=1
        )
    keys = {name: key.key_sha256 for name, key in variants.items()}
    assert base.key_sha256 not in keys.values()
    assert len(set(keys.values())) == len(keys)
    # The asker is in the key only when the version caches per user.
    assert cache.cache_key(v1, [Message(role="user", content=QUESTION)], user_id=2) == base


def test_a_follow_up_is_never_served_another_conversations_answer(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = _faq(owner_access, fake_model)
    version = agent.current_version
    assert version is not None
    follow_up = Message(role="user", content="And the second one?")
    first_chat = [
        Message(role="user", content="List our plans"),
        Message(role="assistant", content="Free and Pro."),
        follow_up,
    ]
    _store(version, first_chat, "Pro costs $20.")
    other_chat = [
        Message(role="user", content="List our offices"),
        Message(role="assistant", content="Paris and Lima."),
        follow_up,
    ]
    assert _lookup(version, other_chat) is None
    assert _lookup(version, first_chat) is not None


def test_a_knowledge_base_change_means_a_miss(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    base = knowledge_base_create(access=owner_access, name="Handbook")
    agent = _faq(owner_access, fake_model, knowledge_base_ids=[base.pk])
    version = agent.current_version
    assert version is not None
    asked = [Message(role="user", content="How many holidays do I get?")]
    before = cache.cache_key(version, asked, user_id=None)
    _store(version, asked, "25 days.")
    cache.knowledge_base_changed(base.pk)
    assert cache.cache_key(version, asked, user_id=None) != before
    assert _lookup(version, asked) is None


def test_per_user_answers_are_served_only_to_the_person_who_asked(
    world: World, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    owner_access = access_of(world.owner, world.workspace_a)
    member_access = access_of(world.member, world.workspace_a)
    agent = _faq(owner_access, fake_model, cache_per_user=True)
    fake_openai.queue("Your manager is Ada.")
    fake_openai.queue("Your manager is Grace.")
    mine = run_now(owner_access, agent, "Who is my manager?")
    theirs = run_now(member_access, agent, "Who is my manager?")
    again = run_now(owner_access, agent, "Who is my manager?")
    assert (mine.cache_hit, theirs.cache_hit, again.cache_hit) == (False, False, True)
    assert theirs.output == "Your manager is Grace."
    assert again.output == "Your manager is Ada."


# --- the semantic tier --------------------------------------------------------------------


def test_the_semantic_tier_is_off_by_default_and_serves_a_rewording_when_on(
    settings, owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    settings.RESPONSE_CACHE_MAX_DISTANCE = 2.0  # any distance: the guard alone decides
    exact_only = _faq(owner_access, fake_model)
    assert exact_only.current_version is not None
    assert exact_only.current_version.cache_semantic is False
    semantic = services.agent_create(
        access=owner_access, name="FAQ 2", model=fake_model, cache_semantic=True
    )
    for agent in (exact_only, semantic):
        fake_openai.queue("Use the reset link on the sign-in page.")
        run_now(owner_access, agent, QUESTION)
    fake_openai.queue("Fresh answer.")
    reworded = "I forgot my password, how can I change it?"
    assert run_now(owner_access, exact_only, reworded).cache_hit is False
    served = run_now(owner_access, semantic, reworded)
    assert served.cache_hit is True
    assert served.output.startswith("Use the reset link")
    hit = UsageRecord.objects.get(outcome=UsageRecord.Outcome.CACHED)
    assert hit.purpose == UsageRecord.Purpose.CACHE_SEMANTIC
    # A near-miss as close as the rewording is refused by the guard.
    fake_openai.queue("Create a new key under API keys.")
    assert run_now(owner_access, semantic, "How do I reset my API key?").cache_hit is False


@pytest.mark.parametrize(("verdict", "served"), [("NO", False), ("YES", True)])
def test_the_model_check_decides_and_its_cost_is_booked_against_the_savings(
    settings,
    owner_access: Access,
    fake_openai: FakeOpenAI,
    fake_model: str,
    verdict: str,
    served: bool,
) -> None:
    settings.RESPONSE_CACHE_MAX_DISTANCE = 2.0
    agent = _faq(owner_access, fake_model, cache_semantic=True, cache_verify=True)
    fake_openai.queue(
        "Use the reset link.", usage={"prompt_tokens": 1000, "completion_tokens": 100}
    )
    run_now(owner_access, agent, QUESTION)
    fake_openai.queue(verdict, usage={"prompt_tokens": 100, "completion_tokens": 1})
    fake_openai.queue("A fresh answer.")
    run = run_now(owner_access, agent, "I forgot my password, how can I change it?")

    assert run.cache_hit is served
    check = UsageRecord.objects.get(purpose=UsageRecord.Purpose.CACHE_CHECK)
    assert check.cost_usd == Decimal("0.000315")  # 100×$3 + 1×$15 per million tokens
    assert (
        "New question: I forgot my password"
        in fake_openai.requests[1].body["messages"][-1]["content"]
    )
    report = usage_report(access=owner_access)
    saved = Decimal("0.004500") if served else Decimal(0)
    assert report.cache_net_saved == saved - check.cost_usd
    assert report.totals["checks"] == 1


# --- never stored -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ({"text": "Partial ans", "stop_reason": "length"}, "cut off at max tokens"),
        ({"text": "", "stop_reason": "stop"}, "empty"),
        ({"text": "I can't help with that.", "stop_reason": "content_filter"}, "refused"),
    ],
)
def test_incomplete_or_refused_answers_are_not_stored(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str, reply: dict, why: str
) -> None:
    agent = _faq(owner_access, fake_model)
    fake_openai.queue(reply["text"], stop_reason=reply["stop_reason"])
    run_now(owner_access, agent, QUESTION)
    assert CachedResponse.objects.count() == 0, why


def test_an_answer_withheld_by_a_guardrail_is_not_stored(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = _faq(owner_access, fake_model, blocked_patterns=["secret"])
    fake_openai.queue("The secret is 42.")
    run = run_now(owner_access, agent, QUESTION)
    assert run.status == AgentRun.Status.FAILED
    assert CachedResponse.objects.count() == 0


def test_an_answer_that_made_an_http_request_is_not_stored(
    owner_access: Access, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = _faq(owner_access, fake_model, tools=["http_request"])
    fake_openai.queue(tool_calls=[("http_request", {"url": "https://example.invalid/x"})])
    fake_openai.queue("The page said hello.")
    run = run_now(owner_access, agent, "What does the status page say?")
    assert run.tool_steps[0]["tool"] == "http_request"
    assert CachedResponse.objects.count() == 0


# --- "Wrong answer?" ----------------------------------------------------------------------


def _cached_run(access: Access, fake_openai: FakeOpenAI, model: str) -> tuple[Agent, AgentRun]:
    agent = _faq(access, model)
    fake_openai.queue("Use the reset link.", usage={"prompt_tokens": 10, "completion_tokens": 5})
    run_now(access, agent, QUESTION)
    hit = run_now(access, agent, QUESTION)
    assert hit.cache_hit
    assert hit.cache_entry_id is not None
    return agent, hit


def _wrong_url(workspace: Workspace, agent: Agent, run: AgentRun) -> str:
    return reverse(
        "agent_run_cache_wrong",
        kwargs={"workspace_slug": workspace.slug, "agent_id": agent.pk, "run_id": run.pk},
    )


def test_wrong_answer_on_a_run_evicts_the_entry_and_is_counted(
    world: World, owner_client: Client, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    access = access_of(world.owner, world.workspace_a)
    agent, hit = _cached_run(access, fake_openai, fake_model)
    page = owner_client.get(
        reverse(
            "agent_run_status",
            kwargs={"workspace_slug": "alpha", "agent_id": agent.pk, "run_id": hit.pk},
        )
    )
    assert "Wrong answer?" in page.content.decode()

    response = owner_client.post(_wrong_url(world.workspace_a, agent, hit), HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert "Reported as wrong" in response.content.decode()
    with schema_context(world.workspace_a.schema_name):
        assert not CachedResponse.objects.filter(pk=hit.cache_entry_id or 0).exists()
        report = CacheReport.objects.get()
        assert (report.tier, report.run_id, report.reported_by_id) == (
            CacheReport.Tier.EXACT,
            hit.pk,
            world.owner.pk,
        )
        assert usage_report(access=access).cache_reports == 1
        fake_openai.queue("A better answer.")
        assert run_now(access, agent, QUESTION).cache_hit is False  # asks the model again
    again = owner_client.post(_wrong_url(world.workspace_a, agent, hit))
    assert again.status_code == 409
    usage = owner_client.get(reverse("usage", kwargs={"workspace_slug": "alpha"}))
    assert "1 reported as wrong" in usage.content.decode()


def test_outsiders_and_viewers_cannot_report_a_cached_answer(
    world: World, outsider_client: Client, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    from tenants.models import Membership, Role

    access = access_of(world.owner, world.workspace_a)
    agent, hit = _cached_run(access, fake_openai, fake_model)
    url = _wrong_url(world.workspace_a, agent, hit)
    assert outsider_client.post(url).status_code in (403, 404)
    Membership.objects.filter(user=world.member, workspace=world.workspace_a).update(
        role=Role.VIEWER
    )
    from tests.helpers.personas import logged_in

    assert logged_in(world.member).post(url).status_code == 403
    with schema_context(world.workspace_a.schema_name):
        assert CachedResponse.objects.filter(pk=hit.cache_entry_id or 0).exists()
        assert CacheReport.objects.count() == 0


def test_wrong_answer_on_a_chat_turn_evicts_the_entry(
    world: World, owner_client: Client, in_alpha: None
) -> None:
    access = access_of(world.owner, world.workspace_a)
    agent = services.agent_create(access=access, name="Helper", model="offline:demo")
    conversation = chat_services.conversation_start(
        access=access, agent_id=agent.pk, question=QUESTION
    )
    first = conversation.turns.get()
    turn_answer(first.pk)
    second = chat_services.turn_start(
        access=access, conversation_id=conversation.pk, question=QUESTION
    )
    turn_answer(second.pk)
    turns = list(ConversationTurn.objects.order_by("pk"))
    assert [t.cache_hit for t in turns] == [False, True]

    url = reverse(
        "turn_cache_wrong",
        kwargs={
            "workspace_slug": "alpha",
            "conversation_id": conversation.pk,
            "turn_id": turns[1].pk,
        },
    )
    response = owner_client.post(url, HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert "Reported as wrong" in response.content.decode()
    assert CachedResponse.objects.count() == 0
    assert CacheReport.objects.get().turn_id == turns[1].pk


def test_the_agent_form_states_the_semantic_tiers_measured_accuracy(
    owner_client: Client, in_alpha: None
) -> None:
    from agents.cache.calibration import semantic_accuracy_statement

    page = owner_client.get(reverse("agent_create", kwargs={"workspace_slug": "alpha"}))
    body = page.content.decode()
    assert "semantic tier" in body
    assert semantic_accuracy_statement()[:60] in body
    created = owner_client.post(
        reverse("agent_create", kwargs={"workspace_slug": "alpha"}),
        {
            "name": "Sem",
            "model": "offline:demo",
            "max_tokens": 100,
            "max_tool_calls": 2,
            "cache_enabled": "on",
            "cache_semantic": "on",
        },
        follow=True,
    )
    assert "Semantic cache on." in created.content.decode()
