"""Answering a chat turn (called by the Celery task, in the workspace's schema): the messages
its version's memory mode calls for, `answer_with_version` streaming into the conversation's
group, the saved result, then (summary memory) the summary refresh."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.utils import timezone

from agents import memory
from agents.chat import live
from agents.execution import answer_with_version
from agents.gateway.calls import UsageContext, spent_before_failing
from agents.models import Conversation, ConversationTurn, MemoryMode
from core.exceptions import ApplicationError
from tenants.schemas import current_schema

logger = logging.getLogger(__name__)

UNEXPECTED = "Something went wrong on our side while answering. Please try again."


def turn_answer(turn_id: int) -> str | None:
    """Returns the turn's final status, or None when there was nothing to answer (a missing
    or already finished turn)."""
    turn = (
        ConversationTurn.objects.select_related("version", "conversation")
        .filter(pk=turn_id)
        .first()
    )
    if turn is None or turn.status != ConversationTurn.Status.STREAMING:
        return None
    version = turn.version
    with live.TurnPublisher(schema_name=current_schema(), turn=turn) as publisher:
        started = time.perf_counter()
        try:
            answer = answer_with_version(
                version,
                messages=memory.messages_for_turn(turn),
                context=UsageContext(
                    agent_id=version.agent_id,
                    run_cap_usd=version.max_cost_per_run_usd,
                    user_id=turn.conversation.created_by_id,
                ),
                on_event=publisher.on_event,
            )
        except ApplicationError as exc:  # budget refusals, no model could answer, …
            usage, cost = spent_before_failing(exc)
            _finish(
                turn,
                started,
                status=ConversationTurn.Status.FAILED,
                error=exc.message,
                input_tokens=usage.tokens_in,
                output_tokens=usage.output_tokens,
                cost_usd=cost,
            )
        except Exception:
            logger.exception("chat: turn %s failed unexpectedly", turn.pk)
            _finish(turn, started, status=ConversationTurn.Status.FAILED, error=UNEXPECTED)
        else:
            Status = ConversationTurn.Status
            _finish(
                turn,
                started,
                status=Status.DONE if answer.ok else Status.FAILED,
                answer=answer.text if answer.ok else "",
                error=answer.error,
                tool_steps=answer.tool_steps,
                input_tokens=answer.usage.tokens_in,
                output_tokens=answer.usage.output_tokens,
                cost_usd=answer.cost_usd,
                cache_hit=answer.cache_hit,
                cache_entry_id=answer.cache_entry_id,
            )
        publisher.finished(turn)
    if turn.status == ConversationTurn.Status.DONE and version.memory_mode == MemoryMode.SUMMARY:
        memory.summary_refresh(conversation_id=turn.conversation_id, version=version)
    return turn.status


def _finish(turn: ConversationTurn, started: float, **fields: Any) -> None:
    """Save the outcome. An update, not a save: the conversation may have been deleted while
    the answer streamed, and then there is simply nothing to write."""
    fields["latency_ms"] = int((time.perf_counter() - started) * 1000)
    for name, value in fields.items():
        setattr(turn, name, value)
    ConversationTurn.objects.filter(pk=turn.pk).update(**fields)
    Conversation.objects.filter(pk=turn.conversation_id).update(updated_at=timezone.now())
