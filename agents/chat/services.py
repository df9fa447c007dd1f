"""Writes for chat: start a conversation, ask a question (a new turn), delete, and give up on
turns whose worker vanished. Answering a turn is `agents.chat.answering.turn_answer`, run by
the Celery task that `turn_start` queues."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Literal

from django.db import transaction
from django.utils import timezone

from agents.cache import responses as cache
from agents.chat import live
from agents.chat.selectors import conversation_get
from agents.models import Agent, AgentVersion, Conversation, ConversationTurn
from agents.services import MAX_INPUT_CHARS
from core.exceptions import ApplicationError, Conflict, NotFound, ValidationFailed
from core.hooks import listing_copy_check
from core.queue import enqueue
from tenants.permissions import Access, Perm
from tenants.schemas import current_schema

# The task that answers a turn (agents/chat/tasks.py declares it under this name).
ANSWER_TURN_TASK = "agents.chat.answer_turn"
TITLE_CHARS = 80
INTERRUPTED = "This answer was interrupted before it finished. Ask again to retry."


def _question(question: str) -> str:
    text = (question or "").strip()
    if not text:
        raise ValidationFailed("Write a question first.", fields={"question": ["Required."]})
    if len(text) > MAX_INPUT_CHARS:
        raise ValidationFailed(
            "The question is too long.",
            fields={"question": [f"At most {MAX_INPUT_CHARS} characters (it has {len(text)})."]},
        )
    return text


def title_from(question: str) -> str:
    """The first line of the first question, shortened at a word boundary."""
    line = " ".join(question.strip().splitlines()[0].split()) if question.strip() else ""
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[: TITLE_CHARS - 1].rsplit(" ", 1)[0] or line[: TITLE_CHARS - 1]
    return cut.rstrip(" ,.;:") + "…"


def _user_id(access: Access) -> int:
    if access.user is None:
        raise NotFound("Conversations belong to people, not API keys.")
    return access.user.pk


def _new_turn(conversation: Conversation, version: AgentVersion, question: str) -> ConversationTurn:
    """Create the turn; after commit, show it on every open page, then queue its answer (in
    that order, so no streamed piece can arrive before the turn's article)."""
    turn = ConversationTurn.objects.create(
        conversation=conversation, version=version, question=question
    )
    schema = current_schema()
    transaction.on_commit(lambda: live.publish_started(schema, turn), robust=True)
    transaction.on_commit(partial(enqueue, ANSWER_TURN_TASK, turn.pk))
    return turn


def _chattable(
    agent: Agent | None, *, field: str, surface: Literal["chat"] | None = None
) -> AgentVersion:
    """The version that answers; with `surface`, also asks the marketplace (`listing_check`),
    whose refusal is shown beside `field` (the agent picker, or the composer)."""
    if agent is None or agent.current_version is None:
        raise NotFound("No agent with that id in this workspace.", fields={field: ["Not found."]})
    if agent.archived_at is not None:
        raise Conflict(
            f"“{agent.name}” is archived, so it cannot be chatted with.",
            fields={field: [f"“{agent.name}” is archived; restore it to chat with it."]},
        )
    if surface is not None:
        try:
            listing_check(agent, surface=surface)
        except ApplicationError as exc:
            exc.fields = exc.fields or {field: [exc.message]}
            raise
    return agent.current_version


def listing_check(agent: Agent, *, surface: Literal["chat", "shared_chat"]) -> None:
    """An installed listing's copy answers a chat turn only if the marketplace allows it
    (core.hooks.run_starting; 402 `purchase_required`): a paid listing's copy needs a runnable
    purchase, and a per-run purchase's copy answers only in runs (a turn is not a run and is
    never charged). Asked before a turn is queued, so a refusal queues and counts nothing."""
    listing_copy_check("agent", agent.listing_version_id, surface=surface)


def conversation_start(*, access: Access, agent_id: int, question: str) -> Conversation:
    """A new conversation with an active agent, titled after its first question, whose first
    turn is queued at once."""
    access.require(Perm.RUN)
    user_id = _user_id(access)
    text = _question(question)
    with transaction.atomic():
        agent = Agent.objects.select_related("current_version").filter(pk=agent_id).first()
        version = _chattable(agent, field="agent", surface="chat")
        conversation = Conversation.objects.create(
            agent_id=agent_id, title=title_from(text), created_by_id=user_id
        )
        _new_turn(conversation, version, text)
    return conversation


def turn_start(*, access: Access, conversation_id: int, question: str) -> ConversationTurn:
    """Ask the next question in one's own conversation. One turn answers at a time; the
    agent's current version answers (each turn records which one)."""
    access.require(Perm.RUN)
    user_id = _user_id(access)
    text = _question(question)
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update()
            .filter(pk=conversation_id, created_by_id=user_id)
            .first()
        )
        if conversation is None:
            raise NotFound("No conversation of yours with that id in this workspace.")
        agent = Agent.objects.select_related("current_version").get(pk=conversation.agent_id)
        version = _chattable(agent, field="question", surface="chat")
        _expire_stale(conversation.pk)
        if conversation.turns.filter(status=ConversationTurn.Status.STREAMING).exists():
            raise Conflict(
                "The previous answer is still coming.",
                fields={"question": ["Wait for the current answer to finish, then send this."]},
            )
        if not conversation.title:
            conversation.title = title_from(text)
        conversation.save(update_fields=["title", "updated_at"])
        return _new_turn(conversation, version, text)


def question_clean(question: str) -> str:
    """The question stripped and checked (required, at most MAX_INPUT_CHARS)."""
    return _question(question)


def chattable(agent: Agent | None, *, field: str) -> AgentVersion:
    """The version that answers a new turn with `agent` (404 when missing, 409 archived)."""
    return _chattable(agent, field=field)


def turn_queue(
    conversation: Conversation, version: AgentVersion, question: str
) -> ConversationTurn:
    """A new turn queued for the answering worker (inside the caller's transaction); the
    share pages' visitors ask through this like members do."""
    return _new_turn(conversation, version, question)


def _expire_stale(conversation_id: int) -> int:
    cutoff = timezone.now() - timedelta(seconds=live.STREAM_TTL_SECONDS)
    return ConversationTurn.objects.filter(
        conversation_id=conversation_id,
        status=ConversationTurn.Status.STREAMING,
        created_at__lt=cutoff,
    ).update(status=ConversationTurn.Status.FAILED, error=INTERRUPTED)


def turns_expire_stale(*, conversation_id: int) -> int:
    """Fail turns still "answering" long after any answer could take (their worker died), so
    no page shows "Answering…" forever. Returns how many were failed."""
    return _expire_stale(conversation_id)


def conversation_delete(*, access: Access, conversation_id: int) -> None:
    """Delete one's own conversation; owners and admins may delete anyone's."""
    conversation = conversation_get(access=access, conversation_id=conversation_id)
    conversation.delete()


@transaction.atomic
def turn_cache_report(*, access: Access, conversation_id: int, turn_id: int) -> ConversationTurn:
    """The same for a chat turn of a conversation the person may read."""
    access.require(Perm.RUN)
    conversation_get(access=access, conversation_id=conversation_id)
    turn = (
        ConversationTurn.objects.select_for_update(of=("self",))
        .select_related("conversation", "version")
        .filter(pk=turn_id, conversation_id=conversation_id)
        .first()
    )
    if turn is None:
        raise NotFound("No answer with that id in this conversation.")
    cache.answer_report(
        access=access,
        answered=turn,
        question=turn.question,
        agent_id=turn.conversation.agent_id,
        turn_id=turn.pk,
    )
    return turn
