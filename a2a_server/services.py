"""Writes of the A2A server: the owner's choice to expose an agent, and runs started or
canceled through A2A (through the agents app's own services: ledger, budgets, quotas and
audit apply as for any run). A message is a run that is the next turn of its context, a
conversation of runs (decision 125)."""

from __future__ import annotations

import uuid

from django.db import transaction

from a2a_server.selectors import Target
from agents import services as agent_services
from agents.chat.services import title_from
from agents.models import Agent, AgentRun, Conversation
from core.exceptions import Conflict, NotFound, ValidationFailed
from tenants import audit
from tenants.permissions import Access, Perm
from tenants.schemas import activate, activate_public


@transaction.atomic
def agent_a2a_expose_set(*, access: Access, agent_id: int, exposed: bool) -> Agent:
    """Owners and admins (workspace.update) choose which agents answer over A2A."""
    access.require(Perm.WORKSPACE_UPDATE)
    agent = Agent.objects.select_for_update().filter(pk=agent_id).first()
    if agent is None:
        raise NotFound("No agent with that id in this workspace.")
    if agent.a2a_exposed != exposed:
        agent.a2a_exposed = exposed
        agent.save(update_fields=["a2a_exposed", "updated_at"])
        audit.record_for(
            access,
            action=audit.Action.AGENT_UPDATED,
            target=agent,
            metadata={"a2a_exposed": exposed},
        )
    return agent


CONTEXT_PREFIX = "ctx-"
RUN_CONTEXT_PREFIX = "run-"
UNKNOWN_CONTEXT = "No context with that id for this agent; leave contextId out to start one."


def _context(target: Target, context_id: str, text: str) -> Conversation:
    """The conversation of `context_id` (locked: one message answers at a time), or a new one
    when `context_id` is empty. Only contexts this endpoint issued for this agent in this
    workspace are found; any other id is the same error, which says nothing of it."""
    if not context_id:
        return Conversation.objects.create(
            agent_id=target.agent_id,
            title=title_from(text),
            context_id=f"{CONTEXT_PREFIX}{uuid.uuid4().hex}",
        )
    conversation = None
    if context_id.startswith(CONTEXT_PREFIX):
        conversation = (
            Conversation.objects.select_for_update()
            .filter(context_id=context_id, agent_id=target.agent_id)
            .first()
        )
    elif context_id.startswith(RUN_CONTEXT_PREFIX):
        conversation = _run_context(target, context_id)
    if conversation is None:
        raise ValidationFailed(UNKNOWN_CONTEXT, fields={"contextId": [UNKNOWN_CONTEXT]})
    busy = AgentRun.objects.filter(
        conversation=conversation, status__in=[AgentRun.Status.QUEUED, AgentRun.Status.RUNNING]
    ).first()
    if busy is not None:
        message = (
            f"The context's previous message (task {busy.pk}) is still being answered; send "
            "this one when it has finished."
        )
        raise Conflict(message, fields={"contextId": [message]})
    conversation.save(update_fields=["updated_at"])
    return conversation


def _run_context(target: Target, context_id: str) -> Conversation | None:
    """`run-<id>`: the context id a task carries when its run has no conversation (a task from
    before contexts were conversations, or one whose conversation was deleted). Continuing it
    makes that run the first turn of a conversation that keeps the same id, so a client that
    kept the id goes on where it was. Only a run of this agent with no other context counts."""
    run_id = context_id.removeprefix(RUN_CONTEXT_PREFIX)
    if not run_id.isdigit():
        return None
    run = (
        AgentRun.objects.select_for_update()
        .filter(pk=int(run_id), agent_id=target.agent_id)
        .only("pk", "input", "conversation_id")
        .first()
    )
    if run is None:
        return None
    conversation = (
        Conversation.objects.select_for_update()
        .filter(context_id=context_id, agent_id=target.agent_id)
        .first()
    )
    if conversation is not None or run.conversation_id is not None:
        return conversation
    conversation = Conversation.objects.create(
        agent_id=target.agent_id, title=title_from(run.input), context_id=context_id
    )
    AgentRun.objects.filter(pk=run.pk).update(conversation=conversation)
    return conversation


def a2a_run_start(*, target: Target, text: str, context_id: str = "") -> AgentRun:
    """A run of the target agent with `text` as its input, the next turn of context
    `context_id` (a new context when empty). The agents app's run start does every check
    (input, quota, purchase); a refused run leaves no new context behind."""
    activate(target.access.workspace)
    try:
        with transaction.atomic():
            conversation = _context(target, context_id, text)
            run = agent_services.agent_run_start(
                access=target.access,
                agent_id=target.agent_id,
                input=text,
                conversation_id=conversation.pk,
            )
        run.conversation = conversation
        return run
    finally:
        activate_public()


def a2a_run_cancel(*, target: Target, run_id: int) -> AgentRun:
    activate(target.access.workspace)
    try:
        run = agent_services.agent_run_cancel(
            access=target.access, agent_id=target.agent_id, run_id=run_id
        )
        _ = run.conversation  # loaded here, in the workspace's schema: the task names it
        return run
    finally:
        activate_public()
