"""The live side of chat: the HTML fragments a turn streams over the channel layer, the Redis
buffer that lets a page opened mid-answer catch up, and what each socket has already shown.

Every message to a conversation's group is `{"type": "chat.fragment", "kind", "turn", "seq",
"html"}` where `html` is one or more htmx out-of-band fragments:

- `started`: a new turn's article, appended to `#turns` (sent before its task is queued);
- `event`: a streamed piece (text appended to the answer, a tool step added or completed),
  numbered by `seq` (its position in the turn's Redis buffer);
- `final`: the saved turn, replacing the whole article (footer with the final figures, the
  saved answer, an error). The saved turn is the truth: an answer withheld by a guardrail or
  rewritten by the output-format repair round replaces what was streamed.

A socket that connects (or reconnects) first joins the group, then renders every turn from the
database plus the buffered pieces of a turn still streaming, and from then on drops any piece
already included (`SocketView`). So a page opened late shows the answer so far, then follows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from django import forms
from django.template.loader import render_to_string
from django.utils.html import escape

from agents import streaming
from agents.models import ConversationTurn
from agents.providers.base import TextDelta, ToolCallReady
from agents.streaming import BufferedPublisher
from agents.tools.loop import LoopEvent, ToolStepDone
from core.formatting import cost_text, duration_text

# How long a streaming turn's pieces are kept for late joiners (agents/streaming.py) is also
# when a turn that is still "answering" is considered abandoned (its worker died) and shown as
# failed.
STREAM_TTL_SECONDS = streaming.STREAM_TTL_SECONDS


def conversation_group(schema_name: str, conversation_id: int) -> str:
    """The conversation's channel-layer group; prefixed with the schema like every group
    (tenants.channels.group_name), because group names are global in Redis."""
    return f"{schema_name}.conversation.{conversation_id}"


def _buffer_key(schema_name: str, turn: ConversationTurn) -> str:
    return streaming.buffer_key("chat", schema_name, turn.pk, turn.created_at)


# ----------------------------------------------------------------------------- presentation


@dataclass(frozen=True)
class StepView:
    """One tool step as the page shows it; `output` is None while the tool runs."""

    index: int
    tool: str
    arguments: str
    output: str | None = None
    ok: bool = True


@dataclass
class Partial:
    """What a streaming turn has produced so far (from its buffer)."""

    text: str = ""
    steps: dict[int, StepView] = field(default_factory=dict)


@dataclass(frozen=True)
class TurnView:
    turn: ConversationTurn
    text: str
    steps: list[StepView]

    @property
    def streaming(self) -> bool:
        return self.turn.status == ConversationTurn.Status.STREAMING

    @property
    def cost(self) -> str:
        return cost_text(self.turn.cost_usd)

    @property
    def latency(self) -> str:
        return duration_text(self.turn.latency_ms)


def _arguments(arguments: Any) -> str:
    return json.dumps(arguments, indent=2, ensure_ascii=False, sort_keys=True)


def _step(index: int, data: dict[str, Any], *, done: bool) -> StepView:
    return StepView(
        index=index,
        tool=str(data.get("tool", "")),
        arguments=_arguments(data.get("arguments", {})),
        output=str(data.get("output", "")) if done else None,
        ok=bool(data.get("ok", True)),
    )


def turn_view(turn: ConversationTurn, partial: Partial | None = None) -> TurnView:
    if turn.status == ConversationTurn.Status.STREAMING:
        partial = partial or Partial()
        return TurnView(turn=turn, text=partial.text, steps=list(partial.steps.values()))
    steps = [_step(i, step, done=True) for i, step in enumerate(turn.tool_steps or [])]
    return TurnView(turn=turn, text=turn.answer, steps=steps)


def render_turn(
    turn: ConversationTurn, *, partial: Partial | None = None, oob: bool = False
) -> str:
    return render_to_string(
        "agents/chat/_turn.html", {"view": turn_view(turn, partial), "oob": oob}
    )


def render_turns(views: list[TurnView], *, oob: bool = False) -> str:
    return render_to_string("agents/chat/_turns.html", {"views": views, "oob": oob})


def render_form(*, workspace_slug: str, conversation_id: int, form: forms.Form) -> str:
    """The message form as an out-of-band fragment (after a send: empty, or with errors),
    focused again so the next question can be typed at once."""
    form.fields["question"].widget.attrs["autofocus"] = True
    return render_to_string(
        "agents/chat/_form.html",
        {
            "form": form,
            "oob": True,
            "workspace_slug": workspace_slug,
            "conversation_id": conversation_id,
        },
    )


def _delta_html(turn_id: int, text: str) -> str:
    return f'<span hx-swap-oob="beforeend:#turn-{turn_id}-answer">{escape(text)}</span>'


def _step_html(turn_id: int, step: StepView, *, append: bool) -> str:
    html = render_to_string(
        "agents/chat/_step.html",
        {"turn_id": turn_id, "step": step, "oob": not append},
    )
    if append:
        return f'<div hx-swap-oob="beforeend:#turn-{turn_id}-steps">{html}</div>'
    return html


# ----------------------------------------------------------------------------- the buffer


def _partial(records: list[dict[str, Any]]) -> Partial:
    partial = Partial()
    for record in records:
        if record["k"] == "text":
            partial.text += record["text"]
        else:
            partial.steps[record["i"]] = _step(record["i"], record, done=record["k"] == "step")
    return partial


def buffered(schema_name: str, turn: ConversationTurn) -> tuple[Partial, int]:
    """A streaming turn's pieces so far, and how many there were (the last `seq` included)."""
    records = streaming.buffered_records(_buffer_key(schema_name, turn))
    return _partial(records), len(records)


# ----------------------------------------------------------------------------- publishing


def fragment(*, kind: str, turn_id: int, html: str, seq: int = 0) -> dict[str, Any]:
    return {"type": "chat.fragment", "kind": kind, "turn": turn_id, "seq": seq, "html": html}


def publish_started(schema_name: str, turn: ConversationTurn) -> None:
    """Tell every open page of the conversation that a turn began (before it is queued)."""
    html = f'<div hx-swap-oob="beforeend:#turns">{render_turn(turn)}</div>'
    async_to_sync(streaming.channel_layer().group_send)(
        conversation_group(schema_name, turn.conversation_id),
        fragment(kind="started", turn_id=turn.pk, html=html),
    )


class TurnPublisher(BufferedPublisher):
    """Streams one turn's events to its conversation's group, in order, from synchronous code
    (the Celery worker)."""

    def __init__(self, *, schema_name: str, turn: ConversationTurn) -> None:
        super().__init__(
            group=conversation_group(schema_name, turn.conversation_id),
            key=_buffer_key(schema_name, turn),
            name=f"chat turn {turn.pk}",
        )
        self.turn_id = turn.pk
        self.calls: dict[str, int] = {}

    def on_event(self, event: LoopEvent) -> None:
        """The `on_event` callback of `answer_with_version`."""
        if isinstance(event, TextDelta):
            if not event.text:
                return
            record: dict[str, Any] = {"k": "text", "text": event.text}
            html = _delta_html(self.turn_id, event.text)
        elif isinstance(event, ToolCallReady):
            index = self.calls.setdefault(event.call.id, len(self.calls))
            record = {
                "k": "call",
                "i": index,
                "tool": event.call.name,
                "arguments": event.call.arguments,
            }
            html = _step_html(self.turn_id, _step(index, record, done=False), append=True)
        elif isinstance(event, ToolStepDone):
            known = event.step.call.id in self.calls
            index = self.calls.setdefault(event.step.call.id, len(self.calls))
            record = {"k": "step", "i": index, **event.step.as_json()}
            html = _step_html(self.turn_id, _step(index, record, done=True), append=not known)
        else:
            return
        self.publish(
            record,
            lambda seq: fragment(kind="event", turn_id=self.turn_id, html=html, seq=seq),
        )

    def finished(self, turn: ConversationTurn) -> None:
        """The saved turn replaces whatever was streamed. The buffer stays until it expires,
        so a socket that read the turn as streaming can still tell which pieces it has."""
        self.send(fragment(kind="final", turn_id=turn.pk, html=render_turn(turn, oob=True)))


# ----------------------------------------------------------------------------- one socket


@dataclass
class SocketView:
    """What one socket has shown, so that nothing reaches its page twice.

    `known`: turns on the page; `seen`: the last piece shown of each streaming turn;
    `finished`: turns shown in their saved state (later pieces of them are stale)."""

    known: set[int] = field(default_factory=set)
    seen: dict[int, int] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)

    def admit(self, message: dict[str, Any]) -> bool:
        turn, kind = int(message["turn"]), message["kind"]
        if kind == "started":
            if turn in self.known:
                return False
            self.known.add(turn)
            return True
        if kind == "final":
            self.known.add(turn)
            self.finished.add(turn)
            return True
        seq = int(message["seq"])
        if turn in self.finished or seq <= self.seen.get(turn, 0):
            return False
        self.seen[turn] = seq
        return True


def resync(*, schema_name: str, turns: list[ConversationTurn]) -> tuple[str, SocketView]:
    """Every turn as it stands (a streaming one with its buffered pieces) as one fragment
    that replaces `#turns`, and the `SocketView` that goes with it. Call after joining the
    group, so nothing published in between is missed."""
    view = SocketView()
    views = []
    for turn in turns:
        view.known.add(turn.pk)
        if turn.status == ConversationTurn.Status.STREAMING:
            partial, count = buffered(schema_name, turn)
            view.seen[turn.pk] = count
            views.append(turn_view(turn, partial))
        else:
            view.finished.add(turn.pk)
            views.append(turn_view(turn))
    return render_turns(views, oob=True), view
