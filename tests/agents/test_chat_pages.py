"""The chat pages: starting a conversation, the conversation page (turns with their tool
steps and figures), the list with search and the owners' "everyone's" filter, deleting, and
who may see what. A turn is answered here by calling what the Celery worker calls; the live
websocket side is in test_chat_stream.py."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.models import User
from agents import services as agent_services
from agents.chat.answering import turn_answer
from agents.models import Agent, Conversation, ConversationTurn
from agents.services import MAX_INPUT_CHARS
from billing.models import ModelPrice
from tenants.models import Membership, Role
from tests.helpers.personas import World, access_of, logged_in, make_user

pytestmark = pytest.mark.django_db


def _url(name: str, slug: str = "alpha", **kwargs: int) -> str:
    return reverse(name, kwargs={"workspace_slug": slug, **kwargs})


@pytest.fixture
def agent(world: World) -> Agent:
    with schema_context(world.workspace_a.schema_name):
        return agent_services.agent_create(
            access=access_of(world.owner, world.workspace_a),
            name="Finance helper",
            model="offline:demo",
            tools=["calculator"],
        )


def _conversation(
    world: World, agent: Agent, user: User, *exchanges: tuple[str, str], title: str = ""
) -> Conversation:
    """A conversation with answered turns, as saved data (for the read-side tests)."""
    version = agent.current_version
    assert version is not None
    with schema_context(world.workspace_a.schema_name):
        conversation = Conversation.objects.create(
            agent=agent, title=title or exchanges[0][0], created_by_id=user.pk
        )
        for question, answer in exchanges:
            ConversationTurn.objects.create(
                conversation=conversation,
                version=version,
                question=question,
                answer=answer,
                status=ConversationTurn.Status.DONE,
            )
        return conversation


def _answer_latest(world: World, conversation_id: int) -> ConversationTurn:
    """What the worker does with the turn the page queued."""
    with schema_context(world.workspace_a.schema_name):
        turn = ConversationTurn.objects.filter(conversation_id=conversation_id).latest("id")
        turn_answer(turn.pk)
        turn.refresh_from_db()
        return turn


def test_starting_a_conversation_titles_it_and_the_answer_shows_on_the_page(
    world: World, owner_client: Client, agent: Agent
) -> None:
    form = owner_client.get(_url("conversation_new") + f"?agent={agent.pk}").content.decode()
    assert f'<option value="{agent.pk}" selected>Finance helper</option>' in form

    question = "Hello there, what can you do for me today? " * 4
    response = owner_client.post(
        _url("conversation_new"), {"agent": agent.pk, "question": question}
    )
    with schema_context(world.workspace_a.schema_name):
        conversation = Conversation.objects.get()
        turn = conversation.turns.get()
    assert response.status_code == 302
    assert response["Location"] == _url("conversation_detail", conversation_id=conversation.pk)
    assert conversation.title.startswith("Hello there, what can you do")
    assert len(conversation.title) <= 80
    assert conversation.title.endswith("…")
    assert conversation.created_by_id == world.owner.pk
    assert turn.status == ConversationTurn.Status.STREAMING

    waiting = owner_client.get(response["Location"]).content.decode()
    assert "Answering…" in waiting
    assert 'aria-busy="true"' in waiting
    assert f'ws-connect="/ws/w/alpha/conversations/{conversation.pk}/"' in waiting
    assert 'hx-ext="ws"' in waiting
    assert "ws-send" in waiting

    _answer_latest(world, conversation.pk)
    page = owner_client.get(response["Location"]).content.decode()
    assert "Answering…" not in page
    assert "[offline model] No LLM provider is configured" in page


def test_a_turn_shows_its_tool_steps_tokens_cost_latency_and_cache_badge(
    world: World, owner_client: Client, agent: Agent
) -> None:
    ModelPrice.objects.create(
        provider="offline",
        model="demo",
        input_per_mtok=Decimal(1000),
        output_per_mtok=Decimal(2000),
    )
    owner_client.post(_url("conversation_new"), {"agent": agent.pk, "question": "What is 12*7?"})
    with schema_context(world.workspace_a.schema_name):
        conversation = Conversation.objects.get()
    turn = _answer_latest(world, conversation.pk)
    assert turn.status == ConversationTurn.Status.DONE, turn.error
    assert turn.tool_steps[0]["tool"] == "calculator"
    assert turn.tool_steps[0]["output"] == "84"
    assert turn.input_tokens > 0
    assert turn.output_tokens > 0
    assert turn.cost_usd > 0

    page = owner_client.get(_url("conversation_detail", conversation_id=conversation.pk))
    html = page.content.decode()
    assert '<details class="chat-step"' in html
    assert "calculator" in html
    assert "&quot;expression&quot;: &quot;12*7&quot;" in html
    assert '<pre class="chat-step__data">84</pre>' in html
    assert f"{turn.input_tokens} in" in html
    assert f"{turn.output_tokens} out" in html
    assert f"${turn.cost_usd.normalize():f}" in html
    assert " ms<" in html
    assert "From cache" not in html


def test_a_cached_answer_is_badged_and_costs_nothing(world: World, owner_client: Client) -> None:
    with schema_context(world.workspace_a.schema_name):
        faq = agent_services.agent_create(
            access=access_of(world.owner, world.workspace_a),
            name="FAQ",
            model="offline:demo",
            cache_enabled=True,
        )
    for _ in range(2):
        owner_client.post(
            _url("conversation_new"), {"agent": faq.pk, "question": "How do refunds work?"}
        )
    with schema_context(world.workspace_a.schema_name):
        first, second = Conversation.objects.order_by("id")
    _answer_latest(world, first.pk)
    cached = _answer_latest(world, second.pk)
    assert cached.cache_hit
    assert cached.cost_usd == 0
    html = owner_client.get(_url("conversation_detail", conversation_id=second.pk)).content
    assert "From cache" in html.decode()


def test_invalid_questions_are_refused_beside_the_field(
    world: World, owner_client: Client, agent: Agent
) -> None:
    conversation = _conversation(world, agent, world.owner, ("Hi", "Hello"))
    send = _url("conversation_send", conversation_id=conversation.pk)

    empty = owner_client.post(send, {"question": "   "})
    too_long = owner_client.post(send, {"question": "x" * (MAX_INPUT_CHARS + 1)})
    no_question = owner_client.post(_url("conversation_new"), {"agent": agent.pk})

    assert empty.status_code == too_long.status_code == no_question.status_code == 400
    assert empty.context["form"].errors["question"] == ["Write a question first."]
    assert f"at most {MAX_INPUT_CHARS} characters" in too_long.context["form"].errors["question"][0]
    assert no_question.context["form"].errors["question"] == ["Write a question first."]
    assert 'class="field field--invalid"' in empty.content.decode()
    with schema_context(world.workspace_a.schema_name):
        assert ConversationTurn.objects.count() == 1
        assert Conversation.objects.count() == 1


def test_one_turn_answers_at_a_time(world: World, owner_client: Client, agent: Agent) -> None:
    conversation = _conversation(world, agent, world.owner, ("Hi", "Hello"))
    send = _url("conversation_send", conversation_id=conversation.pk)
    assert owner_client.post(send, {"question": "First"}).status_code == 302
    busy = owner_client.post(send, {"question": "Second"})
    assert busy.status_code == 400
    assert "Wait for the current answer" in busy.context["form"].errors["question"][0]


def test_archived_agents_cannot_be_chatted_with(
    world: World, owner_client: Client, agent: Agent
) -> None:
    conversation = _conversation(world, agent, world.owner, ("Hi", "Hello"))
    with schema_context(world.workspace_a.schema_name):
        agent_services.agent_archive(
            access=access_of(world.owner, world.workspace_a), agent_id=agent.pk
        )

    new = owner_client.post(_url("conversation_new"), {"agent": agent.pk, "question": "Hi"})
    assert new.status_code == 400
    assert "agent" in new.context["form"].errors
    assert "Finance helper" not in new.content.decode()  # not offered either

    send = owner_client.post(
        _url("conversation_send", conversation_id=conversation.pk), {"question": "Still there?"}
    )
    assert send.status_code == 400
    assert "archived" in send.context["form"].errors["question"][0]
    page = owner_client.get(_url("conversation_detail", conversation_id=conversation.pk))
    assert "is archived, so this conversation is read-only" in page.content.decode()
    assert 'id="chat-form"' not in page.content.decode()
    with schema_context(world.workspace_a.schema_name):
        assert ConversationTurn.objects.count() == 1


def test_the_list_is_newest_first_and_search_finds_answer_text(
    world: World, owner_client: Client, agent: Agent
) -> None:
    _conversation(world, agent, world.owner, ("Order question", "Refunds take five days."))
    _conversation(world, agent, world.owner, ("Shipping question", "We ship worldwide."))
    _conversation(world, agent, world.member, ("Member's refund", "Refunds take a week."))

    listing = owner_client.get(_url("conversation_list")).content.decode()
    assert listing.index("Shipping question") < listing.index("Order question")
    assert "Member&#x27;s refund" not in listing

    found = owner_client.get(_url("conversation_list") + "?q=refund").content.decode()
    assert "Order question" in found  # "refund" matches "Refunds" in the answer
    assert "Shipping question" not in found
    assert "Member&#x27;s refund" not in found
    by_substring = owner_client.get(_url("conversation_list") + "?q=worldw").content.decode()
    assert "Shipping question" in by_substring
    assert "Order question" not in by_substring
    nothing = owner_client.get(_url("conversation_list") + "?q=pineapple").content.decode()
    assert "Nothing matches “pineapple”" in nothing


def test_members_see_their_own_and_owners_may_see_everyones(
    world: World, owner_client: Client, member_client: Client, agent: Agent
) -> None:
    mine = _conversation(world, agent, world.member, ("Member question", "Answer"))
    theirs = _conversation(world, agent, world.owner, ("Owner question", "Answer"))

    member_list = member_client.get(_url("conversation_list") + "?who=all").content.decode()
    assert "Member question" in member_list
    assert "Owner question" not in member_list
    assert (
        member_client.get(_url("conversation_detail", conversation_id=theirs.pk)).status_code == 404
    )
    assert (
        member_client.get(_url("conversation_detail", conversation_id=mine.pk)).status_code == 200
    )

    own_only = owner_client.get(_url("conversation_list")).content.decode()
    assert "Owner question" in own_only
    assert "Member question" not in own_only
    everyone = owner_client.get(_url("conversation_list") + "?who=all").content.decode()
    assert "Owner question" in everyone
    assert "Member question" in everyone
    assert "Started by" in everyone
    assert world.member.display_name in everyone

    read_only = owner_client.get(_url("conversation_detail", conversation_id=mine.pk))
    html = read_only.content.decode()
    assert read_only.status_code == 200
    assert "Only they can continue it" in html
    assert 'id="chat-form"' not in html
    refused = owner_client.post(
        _url("conversation_send", conversation_id=mine.pk), {"question": "Hijack"}
    )
    assert refused.status_code == 400  # not theirs to continue
    with schema_context(world.workspace_a.schema_name):
        assert mine.turns.count() == 1


def test_deleting_ones_own_or_as_an_owner_anyones(
    world: World, owner_client: Client, member_client: Client, agent: Agent
) -> None:
    members = _conversation(world, agent, world.member, ("Member question", "Answer"))
    owners = _conversation(world, agent, world.owner, ("Owner question", "Answer"))
    other = _conversation(world, agent, world.member, ("Another one", "Answer"))

    denied = member_client.post(_url("conversation_delete", conversation_id=owners.pk))
    deleted = member_client.post(_url("conversation_delete", conversation_id=members.pk))
    by_owner = owner_client.post(_url("conversation_delete", conversation_id=other.pk))

    assert denied.status_code == 404
    assert deleted.status_code == by_owner.status_code == 302
    with schema_context(world.workspace_a.schema_name):
        assert list(Conversation.objects.values_list("pk", flat=True)) == [owners.pk]
        assert ConversationTurn.objects.count() == 1


def test_outsiders_get_404_on_every_chat_page_and_action(
    world: World, outsider_client: Client, agent: Agent
) -> None:
    conversation = _conversation(world, agent, world.owner, ("Secret", "Answer"))
    for method, url in [
        ("get", _url("conversation_list")),
        ("get", _url("conversation_new")),
        ("post", _url("conversation_new")),
        ("get", _url("conversation_detail", conversation_id=conversation.pk)),
        ("post", _url("conversation_send", conversation_id=conversation.pk)),
        ("post", _url("conversation_delete", conversation_id=conversation.pk)),
    ]:
        assert getattr(outsider_client, method)(url).status_code == 404, url
    # The id means nothing in the outsider's own workspace either.
    own = outsider_client.get(_url("conversation_detail", slug="bravo", conversation_id=1))
    assert own.status_code == 404
    with schema_context(world.workspace_a.schema_name):
        assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_viewers_cannot_start_or_continue_conversations(world: World, agent: Agent) -> None:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    client = logged_in(viewer)
    mine = _conversation(world, agent, viewer, ("From before the demotion", "Answer"))
    assert client.get(_url("conversation_list")).status_code == 200
    assert client.get(_url("conversation_new")).status_code == 403
    assert (
        client.post(_url("conversation_new"), {"agent": agent.pk, "question": "x"}).status_code
        == 403
    )
    send = _url("conversation_send", conversation_id=mine.pk)
    assert client.post(send, {"question": "x"}).status_code == 403
    page = client.get(_url("conversation_detail", conversation_id=mine.pk)).content.decode()
    assert 'id="chat-form"' not in page


def test_an_abandoned_answer_is_shown_as_interrupted_not_answering_forever(
    world: World, owner_client: Client, agent: Agent
) -> None:
    conversation = _conversation(world, agent, world.owner, ("Hi", "Hello"))
    with schema_context(world.workspace_a.schema_name):
        turn = ConversationTurn.objects.create(
            conversation=conversation, version=conversation.turns.get().version, question="Lost?"
        )
        ConversationTurn.objects.filter(pk=turn.pk).update(
            created_at=timezone.now() - timedelta(minutes=20)
        )
    html = owner_client.get(_url("conversation_detail", conversation_id=conversation.pk))
    assert "Answering…" not in html.content.decode()
    assert "interrupted before it finished" in html.content.decode()
    # … and the next question is accepted.
    send = _url("conversation_send", conversation_id=conversation.pk)
    assert owner_client.post(send, {"question": "Again"}).status_code == 302


def test_the_agent_page_links_to_a_new_conversation_with_it(
    owner_client: Client, agent: Agent
) -> None:
    html = owner_client.get(_url("agent_detail", agent_id=agent.pk)).content.decode()
    assert f'href="{_url("conversation_new")}?agent={agent.pk}"' in html
    assert "Chat</a>" in html


def test_the_list_query_count_does_not_grow(
    world: World, owner_client: Client, agent: Agent, django_assert_max_num_queries
) -> None:
    for i in range(12):
        _conversation(world, agent, world.member if i % 2 else world.owner, (f"Q{i}", "A"))
    owner_client.get(_url("conversation_list") + "?who=all")
    with django_assert_max_num_queries(16):  # 7 queries, each after a SET search_path
        response = owner_client.get(_url("conversation_list") + "?who=all&q=A")
    assert response.content.decode().count('class="conversation-list__title"') == 12
