"""Reads for chat. Each person sees their own conversations; owners and admins (who may read
the audit log) may also see everyone's. A conversation someone may not see is "not found".
A2A contexts (conversations of runs, decision 125) are not chats: their turns are runs, shown
in the agent's run history."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from accounts.models import User
from agents.models import Agent, Conversation, ConversationTurn
from core.exceptions import NotFound
from tenants.permissions import Access, Perm

SEARCH_CONFIG = "english"


def can_see_everyones(*, access: Access) -> bool:
    return access.can(Perm.AUDIT_VIEW)


def _visible(access: Access) -> QuerySet[Conversation]:
    access.require(Perm.WORKSPACE_VIEW)
    conversations = Conversation.objects.filter(context_id="")
    if can_see_everyones(access=access):
        return conversations
    if access.user is None:
        return conversations.none()
    return conversations.filter(created_by_id=access.user.pk)


def conversations_list(
    *, access: Access, query: str = "", everyone: bool = False
) -> QuerySet[Conversation]:
    """Newest activity first. `everyone` (owners and admins only) lists other people's too.
    `query` matches the title, or any question or answer: by words (PostgreSQL full text,
    so "refunds" finds "refund") or as a plain substring."""
    conversations = _visible(access)
    if not (everyone and can_see_everyones(access=access)):
        user_id = access.user.pk if access.user is not None else None
        conversations = conversations.filter(created_by_id=user_id)
    query = query.strip()
    if query:
        turns = (
            ConversationTurn.objects.filter(conversation=OuterRef("pk"))
            .annotate(document=SearchVector("question", "answer", config=SEARCH_CONFIG))
            .filter(
                Q(document=SearchQuery(query, search_type="websearch", config=SEARCH_CONFIG))
                | Q(question__icontains=query)
                | Q(answer__icontains=query)
            )
        )
        conversations = conversations.filter(Q(title__icontains=query) | Exists(turns))
    return (
        conversations.select_related("agent")
        .annotate(turn_count=Count("turns"))
        .order_by("-updated_at", "-id")
    )


def conversation_get(*, access: Access, conversation_id: int) -> Conversation:
    conversation = (
        _visible(access)
        .select_related("agent", "agent__current_version")
        .filter(pk=conversation_id)
        .first()
    )
    if conversation is None:
        raise NotFound("No conversation with that id in this workspace.")
    return conversation


def conversation_turns(conversation: Conversation) -> list[ConversationTurn]:
    return list(conversation.turns.select_related("version").order_by("created_at", "id"))


def chat_agents(*, access: Access) -> QuerySet[Agent]:
    """The agents one can start a conversation with: not archived, with a version."""
    access.require(Perm.WORKSPACE_VIEW)
    return Agent.objects.filter(archived_at__isnull=True, current_version__isnull=False)


def owner_names(conversations: Iterable[Conversation]) -> dict[int, str]:
    """Who started each conversation (users live in the public schema), in one query."""
    ids = {c.created_by_id for c in conversations if c.created_by_id is not None}
    return {u.pk: u.display_name for u in User.objects.filter(pk__in=ids)}
