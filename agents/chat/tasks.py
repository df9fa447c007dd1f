from __future__ import annotations

from celery import shared_task

from agents.chat.answering import turn_answer
from agents.chat.services import ANSWER_TURN_TASK


@shared_task(name=ANSWER_TURN_TASK, acks_late=False, max_retries=0)
def answer_turn(turn_id: int) -> str | None:
    """Answer a chat turn, streaming it to the conversation's group. Runs in the schema of
    the workspace that queued it (tenant-schemas-celery).

    At most once (acked on receipt): a redelivered turn would stream and pay a second time. A
    turn whose worker died is failed as interrupted when its page is next opened."""
    return turn_answer(turn_id)
