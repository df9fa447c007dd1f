"""Writes for agents: immutable versions, archive/duplicate/restore, and starting runs."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from agents.cache import responses as cache
from agents.gateway.model_names import model_problem
from agents.models import Agent, AgentRun, AgentVersion, KnowledgeBase, MemoryMode
from agents.outbound.guard import check_public_url
from agents.runs.executor import EXECUTE_RUN_TASK
from agents.settings_schema import (
    MAX_TOKENS,
    MAX_TOKENS_DEFAULT,
    NAME_MAX_LENGTH,
    TEMPERATURE_MAX,
    TEMPERATURE_MIN,
    VERSION_FIELDS,
    output_schema_problem,
)
from agents.tools.loop import tools_by_name
from billing import quotas
from core import recovery
from core.exceptions import Conflict, NotFound, ValidationFailed
from core.hooks import listing_copy_check
from core.queue import enqueue
from tenants import audit
from tenants.permissions import Access, Perm
from tenants.schemas import current_schema

MAX_INPUT_CHARS = 100_000


def _validated_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check a version's settings; errors name the field."""
    errors: dict[str, list[str]] = {}
    problem = model_problem(str(config.get("model") or ""))
    if problem:
        errors["model"] = [problem]
    temperature = config.get("temperature")
    if temperature is not None and not TEMPERATURE_MIN <= float(temperature) <= TEMPERATURE_MAX:
        errors["temperature"] = [
            f"Use a temperature between {TEMPERATURE_MIN} and {TEMPERATURE_MAX}."
        ]
    max_tokens = int(config.get("max_tokens") or MAX_TOKENS_DEFAULT)
    if max_tokens not in MAX_TOKENS:
        errors["max_tokens"] = [f"Use between {MAX_TOKENS.low} and {MAX_TOKENS.high} tokens."]
    try:
        tools_by_name(list(config.get("tools") or []))
    except ValidationFailed as exc:
        errors["tools"] = exc.fields["tools"]
    if config.get("memory_mode", MemoryMode.NONE) not in MemoryMode.values:
        errors["memory_mode"] = [f"Choose one of: {', '.join(MemoryMode.values)}."]
    for pattern in config.get("blocked_patterns") or []:
        try:
            re.compile(pattern)
        except re.error as exc:
            errors.setdefault("blocked_patterns", []).append(f"'{pattern}': {exc}.")
    schema = config.get("output_schema")
    if schema is not None:
        problem = output_schema_problem(schema)
        if problem:
            errors["output_schema"] = [problem]
    base_ids = config.get("knowledge_base_ids") or []
    if not all(isinstance(i, int) for i in base_ids):
        errors["knowledge_base_ids"] = ["Use knowledge base ids (numbers)."]
    else:
        missing = set(base_ids) - set(
            KnowledgeBase.objects.filter(pk__in=base_ids).values_list("pk", flat=True)
        )
        if missing:
            errors["knowledge_base_ids"] = [
                f"No knowledge base with id {', '.join(map(str, sorted(missing)))} here."
            ]
    cap = config.get("max_cost_per_run_usd")
    if cap is not None and Decimal(str(cap)) <= 0:
        errors["max_cost_per_run_usd"] = ["The cap must be more than zero."]
    if errors:
        raise ValidationFailed(
            "The agent's settings are invalid: " + ", ".join(errors), fields=errors
        )
    return {field: config[field] for field in VERSION_FIELDS if field in config}


def _new_version(agent: Agent, config: dict[str, Any], *, by: int | None) -> AgentVersion:
    number = (agent.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = AgentVersion(agent=agent, number=number, created_by_id=by, **config)
    version.save()
    agent.current_version = version
    agent.save(update_fields=["current_version", "updated_at"])
    cache.invalidate_agent(agent.pk)  # answers of earlier versions must not be served
    return version


def _checked_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX_LENGTH:
        raise ValidationFailed(
            f"Give the agent a name of 1–{NAME_MAX_LENGTH} characters.",
            fields={"name": [f"Enter 1–{NAME_MAX_LENGTH} characters."]},
        )
    return name


def _name_holder(name: str, *, exclude: int | None = None) -> Agent | None:
    others = Agent.objects.filter(name__iexact=name, archived_at__isnull=True)
    if exclude is not None:
        others = others.exclude(pk=exclude)
    return others.first()


def _require_free_name(name: str, *, exclude: int | None = None) -> None:
    """Names are unique among active agents, ignoring case (the `agent_name_unique_ci`
    constraint); a transaction-scoped advisory lock on the name serialises the check, so two
    concurrent creates get a form error, not an IntegrityError."""
    key = f"agent-name:{current_schema()}:{name.lower()}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [key])
    holder = _name_holder(name, exclude=exclude)
    if holder is not None:
        message = (
            f"Another agent is already named “{holder.name}” (names are unique in a "
            "workspace, ignoring case). Choose another name."
        )
        raise ValidationFailed(message, fields={"name": [message]})


def agent_free_name(base: str, *, suffix: str = " (copy)") -> str:
    """`base`, else `base` + suffix, else `base` + suffix + " (2)", " (3)"…: the first name no
    active agent has (ignoring case), within the length limit."""
    base = base.strip()[:NAME_MAX_LENGTH] or "Agent"
    candidates = [base, base[: NAME_MAX_LENGTH - len(suffix)] + suffix]
    candidates += [
        base[: NAME_MAX_LENGTH - len(f"{suffix} ({n})")] + f"{suffix} ({n})" for n in range(2, 1000)
    ]
    for candidate in candidates:
        if _name_holder(candidate) is None:
            return candidate
    raise ValidationFailed("No free agent name left.", fields={"name": ["All names are taken."]})


@transaction.atomic
def agent_create(
    *,
    access: Access,
    name: str,
    description: str = "",
    category: str = "",
    mcp_exposed: bool = False,
    **config: Any,
) -> Agent:
    access.require(Perm.BUILD)
    name = _checked_name(name)
    errors: dict[str, list[str]] = {}
    messages: list[str] = []
    try:  # a taken name and bad settings are reported together
        _require_free_name(name)
    except ValidationFailed as exc:
        errors.update(exc.fields)
        messages.append(exc.message)
    try:
        settings = _validated_config(config)
    except ValidationFailed as exc:
        errors.update(exc.fields)
        messages.append(exc.message)
    if errors:
        raise ValidationFailed(" ".join(messages), fields=errors)
    agent = Agent.objects.create(
        name=name,
        description=description,
        category=category,
        mcp_exposed=mcp_exposed,
        created_by_id=access.actor_id,
    )
    version = _new_version(agent, settings, by=access.actor_id)
    audit.record_for(
        access,
        action=audit.Action.AGENT_CREATED,
        target=agent,
        metadata={"version": version.number},
    )
    return agent


def _locked_agent(agent_id: int) -> Agent:
    agent = Agent.objects.select_for_update().filter(pk=agent_id).first()
    if agent is None:
        raise NotFound("No agent with that id in this workspace.")
    return agent


# Changed in place (not versioned): what people see, and whether MCP clients may call it.
DESCRIPTIVE_FIELDS = ("name", "description", "category", "mcp_exposed")


@transaction.atomic
def agent_update(*, access: Access, agent_id: int, **changes: Any) -> Agent:
    """Change an agent: descriptive fields in place, behaviour as a new immutable version."""
    access.require(Perm.BUILD)
    agent = _locked_agent(agent_id)
    if agent.archived_at is not None:
        raise Conflict("This agent is archived; restore it before editing.")
    if "name" in changes:
        changes["name"] = _checked_name(changes["name"])
        if changes["name"].lower() != agent.name.lower():
            _require_free_name(changes["name"], exclude=agent.pk)
    for field in DESCRIPTIVE_FIELDS:
        if field in changes:
            setattr(agent, field, changes.pop(field))
    agent.save(update_fields=[*DESCRIPTIVE_FIELDS, "updated_at"])
    metadata: dict[str, Any] = {}
    if changes:
        current = agent.current_version
        base = {f: getattr(current, f) for f in VERSION_FIELDS} if current else {}
        version = _new_version(agent, _validated_config({**base, **changes}), by=access.actor_id)
        metadata["version"] = version.number
    audit.record_for(access, action=audit.Action.AGENT_UPDATED, target=agent, metadata=metadata)
    return agent


@transaction.atomic
def agent_restore_version(*, access: Access, agent_id: int, number: int) -> AgentVersion:
    """Make an old version current again, as a new version (history stays linear)."""
    access.require(Perm.BUILD)
    agent = _locked_agent(agent_id)
    old = agent.versions.filter(number=number).first()
    if old is None:
        raise NotFound(f"Agent {agent_id} has no version {number}.")
    version = _new_version(agent, {f: getattr(old, f) for f in VERSION_FIELDS}, by=access.actor_id)
    audit.record_for(
        access,
        action=audit.Action.AGENT_VERSION_RESTORED,
        target=agent,
        metadata={"from": number, "version": version.number},
    )
    return version


@transaction.atomic
def agent_archive(*, access: Access, agent_id: int) -> Agent:
    access.require(Perm.BUILD)
    agent = _locked_agent(agent_id)
    if agent.archived_at is None:
        agent.archived_at = timezone.now()
        agent.save(update_fields=["archived_at", "updated_at"])
        audit.record_for(access, action=audit.Action.AGENT_ARCHIVED, target=agent)
    return agent


@transaction.atomic
def agent_duplicate(*, access: Access, agent_id: int) -> Agent:
    """A new agent with the source's current configuration, named "<name> (copy)". The
    duplicate of an installed listing's copy is still a copy of that listing version
    (`listing_version_id` kept): the marketplace asks for the same purchase before it answers
    and a per-run purchase charges its runs (core.hooks.run_starting / run_finished), so
    duplicating never makes a free copy of what was sold (a free listing's stays free)."""
    access.require(Perm.BUILD)
    source = _locked_agent(agent_id)
    current = source.current_version
    config = {f: getattr(current, f) for f in VERSION_FIELDS} if current else {}
    name = agent_free_name(f"{source.name[: NAME_MAX_LENGTH - len(' (copy)')]} (copy)", suffix="")
    _require_free_name(name)
    copy = Agent.objects.create(
        name=name,
        description=source.description,
        category=source.category,
        created_by_id=access.actor_id,
        listing_version_id=source.listing_version_id,
    )
    _new_version(copy, config, by=access.actor_id)
    metadata: dict[str, Any] = {"copied_from": source.pk}
    if source.listing_version_id is not None:
        metadata["listing_version_id"] = source.listing_version_id
    audit.record_for(access, action=audit.Action.AGENT_CREATED, target=copy, metadata=metadata)
    return copy


def agent_run_start(
    *,
    access: Access,
    agent_id: int,
    input: str,
    callback_url: str = "",
    conversation_id: int | None = None,
) -> AgentRun:
    """Queue a run of the agent's current version; the worker picks it up after commit. A
    run of `conversation_id` (an A2A context: the caller checked that it is this agent's) is
    its next turn: it sees the earlier runs as the version's memory mode says."""
    access.require(Perm.RUN)
    text = (input or "").strip()
    if not text:
        raise ValidationFailed("Give the agent some input.", fields={"input": ["Required."]})
    if len(text) > MAX_INPUT_CHARS:
        raise ValidationFailed(
            "The input is too long.", fields={"input": [f"At most {MAX_INPUT_CHARS} characters."]}
        )
    if callback_url:
        check_public_url(callback_url, field="callback_url")
    with transaction.atomic():
        agent = Agent.objects.filter(pk=agent_id, archived_at__isnull=True).first()
        if agent is None or agent.current_version is None:
            raise NotFound("No active agent with that id in this workspace.")
        listing_copy_check("agent", agent.listing_version_id)  # an installed listing: may it run?
        quotas.run_reserve(workspace_id=access.workspace.pk)
        run = AgentRun.objects.create(
            agent=agent,
            version=agent.current_version,
            input=text,
            created_by_id=access.actor_id,
            api_key_prefix=access.api_key.prefix if access.api_key else "",
            callback_url=callback_url,
            conversation_id=conversation_id,
        )
        # robust: a broker outage must not fail a request whose run is committed; the
        # recovery sweep sends runs still queued (agents/runs/executor.py, runs_recover).
        transaction.on_commit(lambda: _enqueue_run(run.pk), robust=True)
    return run


@transaction.atomic
def agent_run_cancel(*, access: Access, agent_id: int, run_id: int) -> AgentRun:
    """Cancel a run no worker has started: it will never execute (the executor claims only
    queued and running runs). A started or finished run is a Conflict: the executor has no
    point at which it could stop a model call half way."""
    access.require(Perm.RUN)
    run = (
        AgentRun.objects.select_for_update(of=("self",))
        .filter(pk=run_id, agent_id=agent_id)
        .first()
    )
    if run is None:
        raise NotFound("No run with that id for this agent.")
    if run.status == AgentRun.Status.CANCELED:
        return run
    if run.status != AgentRun.Status.QUEUED:
        state = run.get_status_display().lower()
        raise Conflict(f"The run is {state}; only a queued run can be canceled.")
    run.status = AgentRun.Status.CANCELED
    run.error = "Canceled before it started."
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])
    audit.record_for(
        access,
        action=audit.Action.AGENT_UPDATED,
        target=run.agent,
        metadata={"canceled_run": run.pk},
    )
    return run


def _enqueue_run(run_id: int) -> None:
    recovery.mark_active(current_schema())
    enqueue(EXECUTE_RUN_TASK, run_id)
