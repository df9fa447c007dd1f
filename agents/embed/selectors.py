"""Reads for shares: the owner's list and one share (through `Access`); for members (viewers
too) the visitors' conversations of a share; for visitors the live share behind a public URL
(switching to its workspace's schema) and their own conversation."""

from __future__ import annotations

import logging

import redis
from django.db.models import Count, OuterRef, QuerySet, Subquery

from agents.chat import live
from agents.embed.tokens import ANONYMOUS_PREFIX
from agents.models import Agent, ChatShare, Conversation, ConversationTurn
from billing import quotas
from core.exceptions import ApplicationError, NotFound
from core.hooks import listing_copy_check
from tenants.models import Workspace
from tenants.permissions import Access, Perm
from tenants.schemas import activate, current_schema

logger = logging.getLogger(__name__)

GONE = "This chat link does not exist or is no longer shared."


def shares_list(*, access: Access) -> QuerySet[ChatShare]:
    access.require(Perm.WORKSPACE_UPDATE)
    return ChatShare.objects.select_related("agent").filter(revoked_at__isnull=True)


def share_get(*, access: Access, share_id: int) -> ChatShare:
    access.require(Perm.WORKSPACE_UPDATE)
    share = ChatShare.objects.select_related("agent").filter(pk=share_id).first()
    if share is None:
        raise NotFound("No share with that id in this workspace.")
    return share


def share_for_token_minting(*, access: Access, share_id: int) -> ChatShare:
    """A live share for the workspace's backend minting end-user tokens (scope `run`)."""
    access.require(Perm.RUN)
    share = ChatShare.objects.filter(pk=share_id, revoked_at__isnull=True).first()
    if share is None:
        raise NotFound("No live share with that id in this workspace.")
    return share


def share_public(*, space: str, key: str) -> tuple[Workspace, ChatShare]:
    """The live share at /s/<space>/<key>/, with the connection switched to its workspace's
    schema (the caller switches back). A wrong key, a revoked share, an archived agent and a
    workspace being deleted all answer the same 404."""
    workspace = Workspace.objects.filter(
        slug=space,
        is_template=False,
        purged_at__isnull=True,
        deletion_requested_at__isnull=True,
    ).first()
    if workspace is None or len(key) < 20:
        raise NotFound(GONE)
    activate(workspace)
    share = (
        ChatShare.objects.select_related("agent", "agent__current_version")
        .filter(key=key, revoked_at__isnull=True, agent__archived_at__isnull=True)
        .first()
    )
    if share is None or share.agent.current_version is None:
        raise NotFound(GONE)
    return workspace, share


def visitor_conversation(*, share: ChatShare, end_user_id: str) -> Conversation | None:
    return Conversation.objects.filter(share=share, end_user_id=end_user_id).first()


# A failed turn's reason as a visitor reads it. The budgets' refusals (quotas.REFUSAL_PREFIX,
# agents.gateway.budgets) name the workspace's plan and spend figures: for members.
VISITOR_LIMIT_REACHED = (
    "This chat has reached its limit for now and cannot answer new questions. "
    "Please try again later."
)


# What a visitor reads when the marketplace refuses the shared agent (a paid listing's copy
# without a runnable purchase, or a per-run purchase's copy: only runs are charged). The reason
# names the workspace's purchases: the share's page shows it to the owners
# (`shared_chat_refusal`), the public sees only that the chat cannot answer.
VISITOR_UNAVAILABLE = (
    "This chat cannot answer questions at the moment. Please contact the site's owner."
)


def shared_chat_refusal(agent: Agent) -> str:
    """Why visitors of a share of `agent` are refused, for the workspace's owners ("" when they
    are not): the marketplace's answer for a copy of a paid listing (core.hooks.run_starting,
    surface "shared_chat"), asked for copies only."""
    try:
        listing_copy_check("agent", agent.listing_version_id, surface="shared_chat")
    except ApplicationError as exc:
        return exc.message
    return ""


def visitor_turns(*, conversation: Conversation | None) -> list[ConversationTurn]:
    """The visitor's turns, oldest first. A turn still answering carries the text streamed so
    far as its `answer` (the chat's Redis buffer that `live.TurnPublisher` fills; empty when
    Redis cannot be read: the saved answer follows), so polling shows the answer growing."""
    if conversation is None:
        return []
    turns = list(conversation.turns.order_by("created_at", "id"))
    for turn in turns:
        if turn.status == ConversationTurn.Status.STREAMING:
            try:
                partial, _ = live.buffered(current_schema(), turn)
            except (redis.RedisError, OSError):
                logger.warning("embed: could not read turn %s's buffer", turn.pk, exc_info=True)
            else:
                turn.answer = partial.text
        elif turn.error.startswith(quotas.REFUSAL_PREFIX):
            turn.error = VISITOR_LIMIT_REACHED
    return turns


# ------------------------------------------------------------------ members' read-only view


def share_for_members(*, access: Access, share_id: int) -> ChatShare:
    """A share (revoked ones too: their conversations stay) for anyone in the workspace."""
    access.require(Perm.WORKSPACE_VIEW)
    share = ChatShare.objects.select_related("agent").filter(pk=share_id).first()
    if share is None:
        raise NotFound("No share with that id in this workspace.")
    return share


def visitor_label(end_user_id: str) -> str:
    """How members see a visitor: the workspace backend's own id, or "Anonymous visitor" and
    the start of the random id (enough to tell two apart)."""
    if end_user_id.startswith(ANONYMOUS_PREFIX):
        return f"Anonymous visitor {end_user_id.removeprefix(ANONYMOUS_PREFIX)[:6]}"
    return end_user_id


def share_conversations(*, access: Access, share: ChatShare) -> QuerySet[Conversation]:
    """The visitors' conversations of `share`, newest activity first, each with its number of
    turns and its last question and answer (one query per page)."""
    access.require(Perm.WORKSPACE_VIEW)
    last = ConversationTurn.objects.filter(conversation=OuterRef("pk")).order_by(
        "-created_at", "-id"
    )
    return (
        Conversation.objects.filter(share=share)
        .annotate(
            turn_count=Count("turns"),
            last_question=Subquery(last.values("question")[:1]),
            last_answer=Subquery(last.values("answer")[:1]),
        )
        .order_by("-updated_at", "-id")
    )


def share_conversation_get(
    *, access: Access, share: ChatShare, conversation_id: int
) -> Conversation:
    access.require(Perm.WORKSPACE_VIEW)
    conversation = Conversation.objects.filter(pk=conversation_id, share=share).first()
    if conversation is None:
        raise NotFound("No visitor conversation with that id for this share.")
    return conversation


def share_conversation_turns(*, conversation: Conversation) -> list[ConversationTurn]:
    return list(conversation.turns.select_related("version").order_by("created_at", "id"))


def agent_shares(*, access: Access, agent_id: int) -> list[ChatShare]:
    """Every share of the agent, newest first, each with its number of visitor conversations
    (the agent page's *Shared chats* card links each to its conversations)."""
    access.require(Perm.WORKSPACE_VIEW)
    return list(
        ChatShare.objects.filter(agent_id=agent_id)
        .annotate(conversation_count=Count("conversations"))
        .order_by("-created_at", "-id")
    )
