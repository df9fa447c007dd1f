"""What a turn sends to the model, by the answering version's memory mode, and the running
summary of summary-mode conversations. A conversation's exchanges are its chat turns, or the
agent runs of an A2A context (a run's input and output; decision 125); both follow these rules.

- `none`: the question alone.
- `last_turns`: the last N answered turns (question and answer), then the question.
- `summary`: the conversation's running summary (as a first exchange), the answered turns the
  summary does not cover yet (normally none; at most N), then the question. After each answered
  turn one gateway call folds the new turns into the summary (`summary_refresh`).

Only answered turns (succeeded runs) count: a failed one has no answer to remember.
"""

from __future__ import annotations

import logging

from agents.gateway.calls import UsageContext, gateway_complete
from agents.models import AgentRun, AgentVersion, Conversation, ConversationTurn, MemoryMode
from agents.providers.base import ChatRequest, Message
from core.exceptions import ApplicationError

logger = logging.getLogger(__name__)

SUMMARY_INTRO = "Here is a summary of our conversation so far:\n\n"
SUMMARY_ACK = "Thanks, I will keep that in mind."
SUMMARY_SYSTEM = (
    "You maintain the running summary of a conversation between a user and an assistant. "
    "Rewrite the summary so that it also covers the new exchanges. Keep facts, names, numbers, "
    "decisions and open questions; drop small talk. At most 200 words. Reply with the summary "
    "only."
)
SUMMARY_MAX_TOKENS = 400


Exchange = tuple[str, str]  # (question, answer)


def _answered(
    conversation_id: int, *, before_turn: int | None = None, before_run: int | None = None
) -> list[Exchange]:
    """The conversation's answered exchanges, oldest first: its chat turns and its runs."""
    turns = ConversationTurn.objects.filter(
        conversation_id=conversation_id, status=ConversationTurn.Status.DONE
    )
    runs = AgentRun.objects.filter(
        conversation_id=conversation_id, status=AgentRun.Status.SUCCEEDED
    )
    if before_turn is not None:
        turns = turns.filter(pk__lt=before_turn)
    if before_run is not None:
        runs = runs.filter(pk__lt=before_run)
    dated = list(turns.values_list("created_at", "pk", "question", "answer"))
    dated += runs.values_list("created_at", "pk", "input", "output")
    return [(question, answer) for _, _, question, answer in sorted(dated)]


def _exchange(exchange: Exchange) -> list[Message]:
    question, answer = exchange
    return [Message(role="user", content=question), Message(role="assistant", content=answer)]


def _messages(
    version: AgentVersion, conversation_id: int, question: str, previous: list[Exchange]
) -> list[Message]:
    asked = Message(role="user", content=question)
    if version.memory_mode == MemoryMode.NONE:
        return [asked]
    keep = max(version.memory_turns, 1)
    messages: list[Message] = []
    if version.memory_mode == MemoryMode.SUMMARY:
        conversation = Conversation.objects.only("summary", "summary_turns").get(pk=conversation_id)
        if conversation.summary:
            messages += [
                Message(role="user", content=SUMMARY_INTRO + conversation.summary),
                Message(role="assistant", content=SUMMARY_ACK),
            ]
        previous = previous[conversation.summary_turns :]
    for earlier in previous[-keep:]:
        messages += _exchange(earlier)
    return [*messages, asked]


def messages_for_turn(turn: ConversationTurn) -> list[Message]:
    version: AgentVersion = turn.version
    if version.memory_mode == MemoryMode.NONE:
        return [Message(role="user", content=turn.question)]
    previous = _answered(turn.conversation_id, before_turn=turn.pk)
    return _messages(version, turn.conversation_id, turn.question, previous)


def messages_for_run(run: AgentRun) -> list[Message]:
    """A run of a conversation (an A2A context) is its next turn; any other run sends its
    input alone."""
    version: AgentVersion = run.version
    if run.conversation_id is None or version.memory_mode == MemoryMode.NONE:
        return [Message(role="user", content=run.input)]
    previous = _answered(run.conversation_id, before_run=run.pk)
    return _messages(version, run.conversation_id, run.input, previous)


def _summary_prompt(summary: str, turns: list[Exchange]) -> str:
    exchanges = "\n\n".join(f"User: {question}\nAssistant: {answer}" for question, answer in turns)
    return (
        f"New exchanges:\n\n{exchanges}\n\n"
        f"Summary so far:\n\n{summary or '(none yet: this is the start of the conversation)'}"
    )


def summary_refresh(*, conversation_id: int, version: AgentVersion) -> bool:
    """Fold the answered turns the summary does not cover yet into it, with one gateway call
    on the version's model (in the usage ledger under the agent). True when it was updated.

    Never holds a lock during the call: the write is a compare-and-set on `summary_turns`,
    so when two refreshes race, the first one's result stays and the second is dropped (the
    next turn sends the turns it missed verbatim, and the refresh after that covers them)."""
    conversation = (
        Conversation.objects.only("summary", "summary_turns").filter(pk=conversation_id).first()
    )
    if conversation is None:  # deleted while the turn was answered
        return False
    answered = _answered(conversation_id)
    covered = conversation.summary_turns
    new = answered[covered:]
    if not new:
        return False
    request = ChatRequest(
        model=version.model,
        system=SUMMARY_SYSTEM,
        messages=(Message(role="user", content=_summary_prompt(conversation.summary, new)),),
        max_tokens=SUMMARY_MAX_TOKENS,
    )
    try:
        outcome = gateway_complete(
            model=version.model, request=request, context=UsageContext(agent_id=version.agent_id)
        )
    except ApplicationError as exc:
        logger.warning(
            "chat: the summary of conversation %s was not updated: %s", conversation_id, exc
        )
        return False
    summary = outcome.result.text.strip()
    if not summary:
        return False
    updated = Conversation.objects.filter(pk=conversation_id, summary_turns=covered).update(
        summary=summary, summary_turns=len(answered)
    )
    return updated == 1
