"""Shared chats (docs/embed.md): the owner's pages (share, branding, regenerate, revoke) and who
may see them; the public page and its framed variant (CSP frame-ancestors); visitor tokens
(anonymous or minted by the workspace's backend with an API key), scoped to one share and
short-lived; each visitor's own conversation answered through the chat's worker path, the
answer's text growing while it is written; quotas (the embed's own and the workspace's plan
and budget); members reading visitors' conversations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from agents import services as agent_services
from agents.chat import live
from agents.chat.answering import turn_answer
from agents.embed import selectors, services, tokens
from agents.gateway import budgets
from agents.models import Agent, ChatShare, Conversation, ConversationTurn, UsageRecord
from agents.providers.base import TextDelta
from billing.plans import default_plan, workspace_plan
from tenants.models import AuditEvent, Membership, Role
from tenants.permissions import Perm
from tests.helpers.personas import World, access_of, key_client, logged_in, make_user

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture(autouse=True)
def _fresh_quotas() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def agent(world: World) -> Agent:
    with schema_context(world.workspace_a.schema_name):
        return agent_services.agent_create(
            access=access_of(world.owner, world.workspace_a),
            name="Support helper",
            model="offline:demo",
        )


@pytest.fixture
def share(world: World, agent: Agent) -> ChatShare:
    with schema_context(world.workspace_a.schema_name):
        return services.share_create(
            access=access_of(world.owner, world.workspace_a), agent_id=agent.pk, title="Help desk"
        )


def _page(name: str, **kwargs: Any) -> str:
    return reverse(name, kwargs={"workspace_slug": "alpha", **kwargs})


def _public(name: str, share: ChatShare, space: str = "alpha") -> str:
    return reverse(name, kwargs={"space": space, "share_key": share.key})


def _anonymous_token(share: ChatShare, client: APIClient | None = None, **data: str) -> str:
    response = (client or APIClient()).post(
        _public("api-share-visitor-tokens", share), data, format="json"
    )
    assert response.status_code == 201, response.content
    return str(response.json()["token"])


def _visitor(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_END_USER_TOKEN=token)
    return client


def _answer_latest(world: World) -> ConversationTurn:
    """What the chat worker does with the queued turn."""
    with schema_context(world.workspace_a.schema_name):
        turn = ConversationTurn.objects.latest("id")
        turn_answer(turn.pk)
        turn.refresh_from_db()
        return turn


# ------------------------------------------------------------------ the owner's pages


def test_an_owner_shares_an_agent_and_gets_a_link_and_a_widget_snippet(
    world: World, owner_client: Client, agent: Agent
) -> None:
    empty = owner_client.get(_page("share_list"))
    assert "No shared chats yet" in empty.content.decode()

    response = owner_client.post(_page("share_list"), {"agent": agent.pk, "title": ""})
    with schema_context(world.workspace_a.schema_name):
        share = ChatShare.objects.get()
    assert response.status_code == 302
    assert share.title == "Support helper"
    assert len(share.key) >= 32

    page = owner_client.get(_page("share_detail", share_id=share.pk)).content.decode()
    assert f"/s/alpha/{share.key}/" in page
    assert f"/s/alpha/{share.key}/frame/" in page
    assert "embed-widget.js" in page


def test_branding_is_saved_and_bad_input_is_named_beside_its_field(
    world: World, owner_client: Client, share: ChatShare
) -> None:
    url = _page("share_detail", share_id=share.pk)
    bad = owner_client.post(
        url,
        {
            "title": "Help",
            "accent_colour": "#0f766e",
            "allowed_origins": "javascript:alert(1)",
        },
    )
    assert bad.status_code == 400
    assert "write scheme and host only" in bad.content.decode()

    svg = owner_client.post(
        url,
        {
            "title": "Help",
            "accent_colour": "#0f766e",
            "logo": _upload("logo.svg", b"<svg onload='x'></svg>"),
        },
    )
    assert svg.status_code == 400
    assert "Upload a PNG, JPEG, GIF or WebP." in svg.content.decode()

    big = owner_client.post(
        url,
        {
            "title": "Help",
            "accent_colour": "#0f766e",
            "logo": _upload("logo.png", PNG + b"\x00" * services.MAX_LOGO_BYTES),
        },
    )
    assert big.status_code == 400
    assert "At most 200 KB" in big.content.decode()

    ok = owner_client.post(
        url,
        {
            "title": "Acme help",
            "greeting": "Hi! Ask me anything.",
            "accent_colour": "#0F766E",
            "allowed_origins": "https://www.acme.test/\nhttp://localhost:8001",
            "logo": _upload("logo.png", PNG),
        },
    )
    assert ok.status_code == 302
    with schema_context(world.workspace_a.schema_name):
        share.refresh_from_db()
    assert share.title == "Acme help"
    assert share.accent_colour == "#0f766e"
    assert share.show_powered_by is False  # an unticked box: "powered by" removed, for free
    assert share.allowed_origins == ["https://www.acme.test", "http://localhost:8001"]
    assert share.logo_type == "image/png"

    logo = Client().get(_public("share_logo", share))
    assert logo.status_code == 200
    assert logo["Content-Type"] == "image/png"
    public = Client().get(_public("share_page", share)).content.decode()
    assert "Acme help" in public
    assert "Hi! Ask me anything." in public
    assert "--embed-accent: #0f766e" in public
    assert "Powered by" not in public


def _upload(name: str, data: bytes) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)


@pytest.mark.parametrize("name", ["share_list", "share_detail"])
def test_anonymous_people_are_sent_to_sign_in(name: str, share: ChatShare) -> None:
    kwargs = {"share_id": share.pk} if name == "share_detail" else {}
    response = Client().get(_page(name, **kwargs))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_an_outsider_gets_404_on_the_owners_pages(
    outsider_client: Client, share: ChatShare
) -> None:
    assert outsider_client.get(_page("share_list")).status_code == 404
    assert outsider_client.get(_page("share_detail", share_id=share.pk)).status_code == 404
    response = outsider_client.post(_page("share_revoke", share_id=share.pk))
    assert response.status_code == 404


def test_viewers_and_members_may_not_share(
    world: World, member_client: Client, share: ChatShare
) -> None:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    for client in (logged_in(viewer), member_client):
        assert client.get(_page("share_list")).status_code == 403
        assert client.get(_page("share_detail", share_id=share.pk)).status_code == 403
        assert client.post(_page("share_regenerate", share_id=share.pk)).status_code == 403
        assert client.post(_page("share_revoke", share_id=share.pk)).status_code == 403
    assert Client().get(_public("share_page", share)).status_code == 200


# ------------------------------------------------------------------ public page and frame


def test_the_public_page_cannot_be_framed_and_the_frame_only_by_the_allowed_sites(
    world: World, share: ChatShare
) -> None:
    page = Client().get(_public("share_page", share))
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page["Content-Security-Policy"]
    assert "script-src 'self'" in page["Content-Security-Policy"]

    closed = Client().get(_public("share_frame", share))
    assert "frame-ancestors 'none'" in closed["Content-Security-Policy"]

    with schema_context(world.workspace_a.schema_name):
        services.share_update(
            access=access_of(world.owner, world.workspace_a),
            share_id=share.pk,
            allowed_origins=["https://www.acme.test", "https://shop.acme.test"],
        )
    framed = Client().get(_public("share_frame", share))
    assert (
        "frame-ancestors https://www.acme.test https://shop.acme.test"
        in framed["Content-Security-Policy"]
    )
    assert "X-Frame-Options" not in framed


def test_a_revoked_share_is_404_everywhere_and_a_new_link_ends_the_old_one(
    world: World, share: ChatShare
) -> None:
    token = _anonymous_token(share)
    old_key = share.key
    with schema_context(world.workspace_a.schema_name):
        share = services.share_regenerate(
            access=access_of(world.owner, world.workspace_a), share_id=share.pk
        )
    assert share.key != old_key
    old = reverse("share_page", kwargs={"space": "alpha", "share_key": old_key})
    assert Client().get(old).status_code == 404
    refused = _visitor(token).get(_public("api-share-visitor-conversation", share))
    assert refused.status_code == 401

    with schema_context(world.workspace_a.schema_name):
        services.share_revoke(access=access_of(world.owner, world.workspace_a), share_id=share.pk)
    for name in ("share_page", "share_frame", "share_logo"):
        assert Client().get(_public(name, share)).status_code == 404
    answer = APIClient().post(_public("api-share-visitor-tokens", share), {}, format="json")
    assert answer.status_code == 404
    assert (
        answer.json()["error"]["message"] == "This chat link does not exist or is no longer shared."
    )


def test_a_share_is_not_found_under_another_workspace(world: World, share: ChatShare) -> None:
    assert Client().get(_public("share_page", share, space="bravo")).status_code == 404


# ------------------------------------------------------------------ visitors


def test_a_visitor_chats_and_sees_only_their_own_history(world: World, share: ChatShare) -> None:
    first = _visitor(_anonymous_token(share))
    url = _public("api-share-visitor-conversation", share)
    assert first.get(url).json() == {"title": "", "turns": []}

    asked = first.post(url, {"question": "What are your opening hours?"}, format="json")
    assert asked.status_code == 202
    assert asked.json()["status"] == "streaming"
    turn = _answer_latest(world)
    assert turn.status == ConversationTurn.Status.DONE

    history = first.get(url).json()
    assert history["title"] == "What are your opening hours?"
    assert [(t["question"], t["status"]) for t in history["turns"]] == [
        ("What are your opening hours?", "done")
    ]
    assert history["turns"][0]["answer"] == turn.answer != ""

    second = _visitor(_anonymous_token(share))
    assert second.get(url).json()["turns"] == []
    with schema_context(world.workspace_a.schema_name):
        conversation = Conversation.objects.get()
        assert conversation.share_id == share.pk
        assert conversation.created_by_id is None
        # Answered through the chat's own path: the usage ledger has the turn's call.
        assert UsageRecord.objects.filter(agent_id=share.agent_id).exists()


def test_an_anonymous_visitor_renews_their_token_and_keeps_their_history(
    world: World, share: ChatShare
) -> None:
    old = tokens.token_sign(
        share=share,
        end_user_id=tokens.new_anonymous_id(),
        now=timezone.now() - timedelta(hours=2),
    )
    url = _public("api-share-visitor-conversation", share)
    expired = _visitor(old.token).get(url)
    assert expired.status_code == 401
    assert expired.json()["error"]["message"] == "This visitor token has expired: get a new one."

    renewed = APIClient().post(
        _public("api-share-visitor-tokens", share), {"previous": old.token}, format="json"
    )
    assert renewed.json()["end_user_id"] == old.end_user_id
    assert _visitor(renewed.json()["token"]).get(url).status_code == 200


def test_a_token_works_for_its_own_share_only(world: World, agent: Agent, share: ChatShare) -> None:
    with schema_context(world.workspace_a.schema_name):
        other = services.share_create(
            access=access_of(world.owner, world.workspace_a), agent_id=agent.pk
        )
    token = _anonymous_token(share)
    response = _visitor(token).get(_public("api-share-visitor-conversation", other))
    assert response.status_code == 401
    assert "another share" in response.json()["error"]["message"]
    forged = _visitor(token[:-2] + "xx").get(_public("api-share-visitor-conversation", share))
    assert forged.status_code == 401
    missing = APIClient().get(_public("api-share-visitor-conversation", share))
    assert missing.status_code == 401


def test_the_workspaces_backend_mints_tokens_for_its_own_users(
    world: World, share: ChatShare
) -> None:
    url = reverse("api-share-end-user-tokens", kwargs={"share_id": share.pk})
    backend = key_client(world, [Perm.RUN])
    minted = backend.post(url, {"end_user_id": "customer-42"}, format="json")
    assert minted.status_code == 201
    assert minted.json()["end_user_id"] == "customer-42"

    visitor = _visitor(minted.json()["token"])
    conversation = _public("api-share-visitor-conversation", share)
    assert visitor.post(conversation, {"question": "Hello"}, format="json").status_code == 202
    with schema_context(world.workspace_a.schema_name):
        assert Conversation.objects.get().end_user_id == "customer-42"

    bad = backend.post(url, {"end_user_id": "has spaces"}, format="json")
    assert bad.status_code == 400
    assert "end_user_id" in bad.json()["error"]["fields"]
    assert (
        key_client(world, [Perm.WORKSPACE_VIEW]).post(url, {"end_user_id": "x"}).status_code == 403
    )
    outsider = key_client(world, [Perm.RUN], workspace=world.workspace_b)
    assert outsider.post(url, {"end_user_id": "x"}, format="json").status_code == 404
    assert APIClient().post(url, {"end_user_id": "x"}, format="json").status_code in (401, 403)


def test_quotas_answer_429_with_a_clear_message(
    settings: Any, world: World, share: ChatShare
) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "embed_address": "2/hour",
            "embed_visitor": "1/hour",
        },
    }
    token = _anonymous_token(share)
    _anonymous_token(share)
    third = APIClient().post(_public("api-share-visitor-tokens", share), {}, format="json")
    assert third.status_code == 429
    assert third.json()["error"]["message"].startswith(
        "Too many new visitors from your address: try again in"
    )

    visitor = _visitor(token)
    url = _public("api-share-visitor-conversation", share)
    assert visitor.post(url, {"question": "One"}, format="json").status_code == 202
    _answer_latest(world)
    again = visitor.post(url, {"question": "Two"}, format="json")
    assert again.status_code == 429
    assert again.json()["error"]["message"].startswith("You have sent too many messages")
    assert visitor.get(url).status_code == 200  # reading one's history is not counted


# ------------------------------------------------------------------ the workspace's plan and budget


def _ask(token: str, share: ChatShare, question: str) -> Any:
    url = _public("api-share-visitor-conversation", share)
    return _visitor(token).post(url, {"question": question}, format="json")


def _turns(world: World) -> int:
    with schema_context(world.workspace_a.schema_name):
        return ConversationTurn.objects.count()


def test_a_workspace_out_of_runs_refuses_the_visitors_question_and_queues_nothing(
    settings: Any, world: World, share: ChatShare
) -> None:
    settings.BILLING_QUOTAS = True
    plan = default_plan()
    plan.runs_per_month = 1
    plan.save(update_fields=["runs_per_month"])
    token = _anonymous_token(share)

    assert _ask(token, share, "First question").status_code == 202
    _answer_latest(world)
    assert workspace_plan(workspace=world.workspace_a).runs_used == 1  # a question is a run

    refused = _ask(token, share, "Second question")
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"  # the API's code for the same refusal
    assert error["message"] == services.VISITOR_LIMIT_REACHED
    assert "Billing" not in error["message"]  # the owner's reason is not the visitor's
    assert _turns(world) == 1
    assert workspace_plan(workspace=world.workspace_a).runs_used == 1

    # A new visitor's first question creates no conversation either.
    newcomer = _anonymous_token(share)
    assert _ask(newcomer, share, "Hello?").status_code == 402
    with schema_context(world.workspace_a.schema_name):
        assert Conversation.objects.count() == 1


@pytest.mark.parametrize("limit", ["monthly budget", "plan's included AI spend"])
def test_a_workspace_over_its_budget_refuses_the_visitors_question_unsent(
    settings: Any, world: World, share: ChatShare, limit: str
) -> None:
    with schema_context(world.workspace_a.schema_name):
        UsageRecord.objects.create(
            kind="openai_compatible", model="m1", outcome="ok", cost_usd=Decimal("0.50")
        )
        if limit == "monthly budget":
            budgets.budget_set(
                access=access_of(world.owner, world.workspace_a), monthly_cap_usd=Decimal("0.50")
            )
        else:
            settings.BILLING_QUOTAS = True
            plan = default_plan()
            plan.included_ai_spend_usd = Decimal("0.25")
            plan.save(update_fields=["included_ai_spend_usd"])
    token = _anonymous_token(share)

    refused = _ask(token, share, "Are you there?")
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert refused.json()["error"]["message"] == services.VISITOR_LIMIT_REACHED
    assert _turns(world) == 0
    with schema_context(world.workspace_a.schema_name):
        assert UsageRecord.objects.count() == 1  # nothing was charged


def test_a_budget_refusal_while_answering_reads_as_the_visitors_message(
    world: World, share: ChatShare
) -> None:
    token = _anonymous_token(share)
    assert _ask(token, share, "Hello").status_code == 202
    with schema_context(world.workspace_a.schema_name):  # what the gateway's refusal leaves
        ConversationTurn.objects.update(
            status=ConversationTurn.Status.FAILED,
            error="Refused before calling openai/gpt: it could cost up to $0.10, and this "
            "workspace has $0.00 left of the $5.00 of AI spend its Free plan includes.",
        )
    turn = _visitor(token).get(_public("api-share-visitor-conversation", share)).json()["turns"][0]
    assert turn["error"] == services.VISITOR_LIMIT_REACHED


# ------------------------------------------------------------------ the answer as it is written


def test_the_visitor_sees_the_answer_grow_while_it_is_written(
    world: World, share: ChatShare
) -> None:
    token = _anonymous_token(share)
    assert _ask(token, share, "Tell me a story").status_code == 202
    url = _public("api-share-visitor-conversation", share)
    with schema_context(world.workspace_a.schema_name):
        turn = ConversationTurn.objects.get()
        with live.TurnPublisher(schema_name=world.workspace_a.schema_name, turn=turn) as pub:
            pub.on_event(TextDelta(text="Once upon "))
            assert _visitor(token).get(url).json()["turns"][0]["answer"] == "Once upon "
            pub.on_event(TextDelta(text="a time"))
    growing = _visitor(token).get(url).json()["turns"][0]
    assert (growing["status"], growing["answer"]) == ("streaming", "Once upon a time")

    final = _answer_latest(world)  # the saved answer replaces what was streamed
    done = _visitor(token).get(url).json()["turns"][0]
    assert (done["status"], done["answer"]) == ("done", final.answer)


# ------------------------------------------------------------------ members read visitors' chats


def _conversations(share: ChatShare) -> str:
    return _page("share_conversations", share_id=share.pk)


def _conversation(share: ChatShare, conversation_id: int, suffix: str = "") -> str:
    name = "share_conversation" + suffix
    return _page(name, share_id=share.pk, conversation_id=conversation_id)


def _visited(world: World, share: ChatShare, question: str = "Where is my order?") -> int:
    token = tokens.token_sign(share=share, end_user_id="customer-42").token
    assert _ask(token, share, question).status_code == 202
    _answer_latest(world)
    with schema_context(world.workspace_a.schema_name):
        return Conversation.objects.get(share=share, end_user_id="customer-42").pk


@pytest.fixture
def viewer_client(world: World) -> Client:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    return logged_in(viewer)


def test_members_and_viewers_read_visitors_conversations_but_only_admins_delete(
    world: World,
    owner_client: Client,
    member_client: Client,
    viewer_client: Client,
    share: ChatShare,
) -> None:
    empty = viewer_client.get(_conversations(share))
    assert empty.status_code == 200
    assert "No visitor has asked anything yet" in empty.content.decode()

    conversation_id = _visited(world, share)
    anonymous = _visitor(_anonymous_token(share))
    anonymous.post(
        _public("api-share-visitor-conversation", share), {"question": "Hi"}, format="json"
    )
    for client in (viewer_client, member_client, owner_client):
        page = client.get(_conversations(share)).content.decode()
        assert "customer-42" in page
        assert "Anonymous visitor" in page
        assert "Where is my order?" in page  # the last message
        one = client.get(_conversation(share, conversation_id))
        assert one.status_code == 200
        assert "Where is my order?" in one.content.decode()
        assert "Read-only" in one.content.decode()
    assert (
        'aria-label="Delete customer-42'
        not in viewer_client.get(_conversations(share)).content.decode()
    )
    assert (
        'aria-label="Delete customer-42' in owner_client.get(_conversations(share)).content.decode()
    )

    for client in (viewer_client, member_client):
        denied = client.post(_conversation(share, conversation_id, "_delete"))
        assert denied.status_code == 403
    deleted = owner_client.post(_conversation(share, conversation_id, "_delete"))
    assert deleted.status_code == 302
    with schema_context(world.workspace_a.schema_name):
        assert not Conversation.objects.filter(pk=conversation_id).exists()
    event = AuditEvent.objects.get(action="share.conversation_deleted")
    assert event.metadata["end_user_id"] == "customer-42"
    assert event.metadata["turns"] == 1
    assert owner_client.get(_conversation(share, conversation_id)).status_code == 404


def test_visitors_conversations_are_404_to_outsiders_and_under_another_share(
    world: World, outsider_client: Client, owner_client: Client, agent: Agent, share: ChatShare
) -> None:
    conversation_id = _visited(world, share)
    assert outsider_client.get(_conversations(share)).status_code == 404
    assert outsider_client.get(_conversation(share, conversation_id)).status_code == 404
    assert outsider_client.post(_conversation(share, conversation_id, "_delete")).status_code == 404
    with schema_context(world.workspace_a.schema_name):
        other = services.share_create(
            access=access_of(world.owner, world.workspace_a), agent_id=agent.pk
        )
    assert owner_client.get(_conversation(other, conversation_id)).status_code == 404


@pytest.mark.parametrize("name", ["share_conversations", "share_conversation"])
def test_anonymous_people_are_sent_to_sign_in_from_visitors_conversations(
    world: World, name: str, share: ChatShare
) -> None:
    kwargs: dict[str, int] = {"share_id": share.pk}
    if name == "share_conversation":
        kwargs["conversation_id"] = _visited(world, share)
    response = Client().get(_page(name, **kwargs))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_the_visitors_list_is_paginated_in_constant_queries(
    world: World, owner_client: Client, share: ChatShare, django_assert_max_num_queries: Any
) -> None:
    with schema_context(world.workspace_a.schema_name):
        version = share.agent.current_version
        assert version is not None
        for n in range(27):
            conversation = Conversation.objects.create(
                agent=share.agent, share=share, end_user_id=f"customer-{n}"
            )
            ConversationTurn.objects.create(
                conversation=conversation, version=version, question=f"Question {n}", answer="Ok"
            )
    with django_assert_max_num_queries(13):
        first = owner_client.get(_conversations(share)).content.decode()
    assert "Page 1 of 2" in first
    assert "customer-26" in first
    assert "customer-0<" not in first
    second = owner_client.get(_conversations(share) + "?page=2").content.decode()
    assert "customer-0<" in second


def test_the_agents_page_links_to_its_shares_conversations(
    world: World, viewer_client: Client, agent: Agent, share: ChatShare
) -> None:
    page = viewer_client.get(_page("agent_detail", agent_id=agent.pk)).content.decode()
    assert _conversations(share) in page
    assert selectors.visitor_label("anon-abcdefghij") == "Anonymous visitor abcdef"
