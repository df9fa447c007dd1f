"""The live side of a run of a conversation (an A2A context, decision 125): while the worker
answers, its text is published as it is written, so the A2A endpoint can relay it.

Every message to the run's channel-layer group is one of
`{"type": "run.delta", "seq", "text"}` (a piece of the answer, numbered by its position in the
run's Redis buffer) and `{"type": "run.status", "status"}` (the worker claimed the run, or
saved its outcome). The buffer lets a listener that joins late catch up: join the group first,
then read the run and its buffer, then drop any piece whose `seq` was in the buffer. The saved
run is the truth: what was streamed may differ (an output-schema repair round, a guardrail).

Only runs of a conversation publish (other runs have no listener, and the model is then called
without streaming, as before)."""

from __future__ import annotations

from channels.layers import BaseChannelLayer

from agents import streaming
from agents.models import AgentRun
from agents.providers.base import TextDelta
from agents.streaming import BufferedPublisher
from agents.tools.loop import LoopEvent

DELTA = "run.delta"
STATUS = "run.status"


def run_group(schema_name: str, run: AgentRun) -> str:
    """The run's group, prefixed with the schema (group names are global in Redis) and keyed
    by the run's creation time too (ids start again in a re-created workspace)."""
    return f"{schema_name}.run.{run.pk}.{int(run.created_at.timestamp() * 1_000_000)}"


def _buffer_key(schema_name: str, run: AgentRun) -> str:
    return streaming.buffer_key("run", schema_name, run.pk, run.created_at)


def layer() -> BaseChannelLayer:
    return streaming.channel_layer()


def buffered(schema_name: str, run: AgentRun) -> list[str]:
    """The pieces of the run's answer published so far (piece n has `seq` n + 1)."""
    return [str(r["text"]) for r in streaming.buffered_records(_buffer_key(schema_name, run))]


class RunPublisher(BufferedPublisher):
    """Publishes one run's text and status changes from the (synchronous) worker."""

    def __init__(self, *, schema_name: str, run: AgentRun) -> None:
        super().__init__(
            group=run_group(schema_name, run),
            key=_buffer_key(schema_name, run),
            name=f"run {run.pk}",
        )

    def on_event(self, event: LoopEvent) -> None:
        """The `on_event` callback of `answer_with_version`: text only (tool steps are not
        part of an A2A answer)."""
        if not isinstance(event, TextDelta) or not event.text:
            return
        text = event.text
        self.publish({"text": text}, lambda seq: {"type": DELTA, "seq": seq, "text": text})

    def status(self, status: str) -> None:
        """The run was claimed or finished: listeners read it again from the database."""
        self.send({"type": STATUS, "status": status})
