"""The engine's `agents.gateway.replay.CallRecorder`: model and tool calls of a step attempt, kept
as RecordedCall rows keyed (step run, attempt, kind, index).

    recorder = StepRecorder(step_id=7, attempt=2, fresh=False)
    with replay.recording(recorder):
        ...  # the gateway and the tool loop ask `recorder.replay(...)` before each call

What replays:

- a redelivered attempt (the worker died, the message came again) replays the calls its first
  delivery recorded, in order, as long as each request's fingerprint matches;
- a new attempt (automatic retry, manual retry, resume) replays the *prefix* of the previous
  attempt's calls with matching fingerprints: the calls that succeeded before the step failed
  are not paid for (or, for tools, performed) twice. When an attempt failed because of what a
  call *answered* (an output that did not match its schema, a guardrail), the engine deletes
  that attempt's records so the next attempt asks again.

The first call whose fingerprint differs from the record at its position ends replaying for the
rest of the attempt (the conversation has diverged); it and every later call are made and
recorded under the current attempt, overwriting a stale record at the same position.

`record` writes on the current connection without a transaction of its own, so the gateway's
ledger row and the record commit together. `replay` reads without locks.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from agents.providers.base import Usage
from workflows.models import RecordedCall


@dataclass(frozen=True)
class _Record:
    attempt: int
    fingerprint: str
    response: dict[str, Any]
    cost_usd: Decimal


class StepRecorder:
    def __init__(self, *, step_id: int, attempt: int, fresh: bool) -> None:
        """`fresh`: this attempt just started, so it has no records of its own yet (only the
        previous attempt's can replay)."""
        self.step_id = step_id
        self.attempt = attempt
        self.fresh = fresh
        self._next: dict[str, int] = {}
        self._records: dict[tuple[str, int], _Record] | None = None
        self._diverged = False
        self.replayed = 0
        self.recorded = 0
        # What replays of *earlier* attempts' calls brought back: that spend was counted when
        # those attempts ended, so the engine subtracts it from this attempt's new spend.
        self.earlier_usage = Usage()
        self.earlier_cost = Decimal(0)

    def _load(self) -> dict[tuple[str, int], _Record]:
        if self._records is None:
            attempts = [self.attempt - 1] if self.fresh else [self.attempt, self.attempt - 1]
            records: dict[tuple[str, int], _Record] = {}
            rows = (
                RecordedCall.objects.filter(step_id=self.step_id, attempt__in=attempts)
                .order_by("attempt")  # the current attempt's rows win over the previous one's
                .values_list("attempt", "kind", "index", "fingerprint", "response", "cost_usd")
            )
            for attempt, kind, index, fingerprint, response, cost in rows:
                records[(kind, index)] = _Record(attempt, fingerprint, response, cost)
            self._records = records
        return self._records

    def replay(self, kind: str, fingerprint: str) -> dict[str, Any] | None:
        """The recorded response (with `cost_usd`, a decimal string, added) of the call at this
        position, or None: then the call is made and `record` stores it at this position."""
        if self._diverged or (self.fresh and self.attempt <= 1):
            return None
        index = self._next.get(kind, 0)
        found = self._load().get((kind, index))
        if found is None or found.fingerprint != fingerprint:
            self._diverged = found is not None
            return None
        self._next[kind] = index + 1
        self.replayed += 1
        if found.attempt < self.attempt:
            self.earlier_cost += found.cost_usd
            usage = found.response.get("usage")
            if isinstance(usage, dict):
                self.earlier_usage = self.earlier_usage + Usage(**usage)
        return {**found.response, "cost_usd": str(found.cost_usd)}

    def record(
        self, kind: str, fingerprint: str, response: dict[str, Any], cost_usd: Decimal
    ) -> None:
        index = self._next.get(kind, 0)
        self._next[kind] = index + 1
        self._diverged = True  # positions after a fresh call never replay older records
        RecordedCall.objects.bulk_create(
            [
                RecordedCall(
                    step_id=self.step_id,
                    attempt=self.attempt,
                    kind=kind,
                    index=index,
                    fingerprint=fingerprint,
                    response=response,
                    cost_usd=cost_usd,
                )
            ],
            update_conflicts=True,
            unique_fields=["step", "attempt", "kind", "index"],
            update_fields=["fingerprint", "response", "cost_usd", "created_at"],
        )
        self.recorded += 1
