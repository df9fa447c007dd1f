"""Typed hooks: how a lower app tells a higher one that something happened without importing it.

Apps are layered (docs/decisions.md, "Layers"); an app imports only from the layers below it.
When a lower app's event matters to a higher one (a run finished → the marketplace's listing
statistics), the lower app fires a hook defined here and the higher app subscribes to it in its
`AppConfig.ready()`. Unlike model signals, a hook carries one explicit, typed event, is fired
deliberately (after the work has committed), and a subscriber's failure is logged and never
raised into the code that fired it: the run's own state is the truth.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar, cast

from django.db import connection

from core.exceptions import ApplicationError

logger = logging.getLogger(__name__)

E = TypeVar("E")


class Hook(Generic[E]):
    """A named event with subscribers. `fire` calls each in subscription order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._receivers: list[Callable[[E], None]] = []

    def subscribe(self, receiver: Callable[[E], None]) -> None:
        """Idempotent: `AppConfig.ready()` may run more than once in a process."""
        if receiver not in self._receivers:
            self._receivers.append(receiver)

    def unsubscribe(self, receiver: Callable[[E], None]) -> None:
        if receiver in self._receivers:
            self._receivers.remove(receiver)

    @property
    def receivers(self) -> tuple[Callable[[E], None], ...]:
        return tuple(self._receivers)

    def fire(self, event: E) -> None:
        """Deliver `event` to every subscriber. Never raises: a failing subscriber is logged with
        the event and the others still run."""
        for receiver in self._receivers:
            try:
                receiver(event)
            except Exception:
                logger.warning(
                    "hook %s: subscriber %s failed on %r",
                    self.name,
                    getattr(receiver, "__qualname__", receiver),
                    event,
                    exc_info=True,
                )


class Veto(Generic[E]):
    """A question a lower app asks before it acts ("may this member be invited?"). Higher apps
    subscribe in `AppConfig.ready()` and refuse by raising an `ApplicationError`, which reaches
    the caller with its status and message. Any other failure of a subscriber is logged and
    refuses nothing: a broken check must not block the work."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._checks: list[Callable[[E], None]] = []

    def subscribe(self, check: Callable[[E], None]) -> None:
        if check not in self._checks:
            self._checks.append(check)

    def unsubscribe(self, check: Callable[[E], None]) -> None:
        if check in self._checks:
            self._checks.remove(check)

    def check(self, event: E) -> None:
        for check in self._checks:
            try:
                check(event)
            except ApplicationError:
                raise
            except Exception:
                logger.warning(
                    "veto %s: check %s failed on %r; not refusing",
                    self.name,
                    getattr(check, "__qualname__", check),
                    event,
                    exc_info=True,
                )


@dataclass(frozen=True)
class RunFinished:
    """An agent or workflow run reached a final state and that state has committed. Fired in
    the run's workspace schema (`schema_name`), once per run."""

    kind: Literal["agent", "workflow"]
    run_id: int
    schema_name: str
    status: str  # the run's final status value: succeeded, failed or cancelled
    listing_version_id: int | None  # set when the agent or workflow is an installed listing
    latency_ms: int
    cost_usd: Decimal

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"


run_finished: Hook[RunFinished] = Hook("run_finished")


@dataclass(frozen=True)
class WorkspaceCreated:
    """A workspace, its schema and its owner committed. Fired once, after the commit."""

    workspace_id: int
    owner_id: int


workspace_created: Hook[WorkspaceCreated] = Hook("workspace_created")


@dataclass(frozen=True)
class MemberInviting:
    """A workspace is about to invite someone (inside the inviting transaction)."""

    workspace_id: int


# Billing refuses when the plan's seats are taken (members and pending invitations).
member_inviting: Veto[MemberInviting] = Veto("member_inviting")


# Where a listing's copy is about to answer (RunStarting.surface).
Surface = Literal["run", "chat", "shared_chat", "evaluation", "step", "step_test"]


@dataclass(frozen=True)
class RunStarting:
    """A run of an installed listing's copy is about to be created (inside the starting
    transaction, before the plan counts it). Asked only for copies (`listing_version_id` set),
    so ordinary runs pay nothing for it."""

    kind: Literal["agent", "workflow"]
    schema_name: str
    listing_version_id: int
    # Where it is about to answer: "run" (an agent or workflow run: the only place a per-run
    # purchase is charged), "chat" (a member's conversation turn), "shared_chat" (a visitor of
    # an embedded or shared chat), "evaluation" (an agent evaluation's case, answered without a
    # run), "step" (an agent step of another workflow's run), "step_test" (the builder's
    # "Test this step": one step answered without a run).
    surface: Surface = "run"


# The marketplace refuses (402) a paid listing's copy without a runnable purchase, and a
# per-run purchase's copy anywhere but in a run (only runs are charged).
run_starting: Veto[RunStarting] = Veto("run_starting")


def listing_copy_check(
    kind: Literal["agent", "workflow"], listing_version_id: int | None, *, surface: Surface = "run"
) -> None:
    """Ask `run_starting` whether an installed listing's copy (`listing_version_id` set) may
    answer on `surface` in the current workspace's schema; ordinary agents and workflows pass
    without a question. Raises the marketplace's refusal (402)."""
    if listing_version_id is not None:
        schema = str(cast(Any, connection).schema_name)
        run_starting.check(RunStarting(kind, schema, listing_version_id, surface))


@dataclass(frozen=True)
class CopyExporting:
    """A workflow is about to leave its workspace as a document (an export file, the export
    API). Asked only when it, or an agent one of its steps binds, is an installed listing's
    copy: `listing_version_id` is the workflow's own (None when it is not a copy),
    `agent_listing_version_ids` the bound agents'."""

    schema_name: str
    name: str
    listing_version_id: int | None
    agent_listing_version_ids: tuple[int, ...] = ()


# The marketplace refuses (403) exporting a copy of a paid listing, or a workflow whose steps
# bind copies of paid agents: the document would be a free copy of what was sold.
copy_exporting: Veto[CopyExporting] = Veto("copy_exporting")
