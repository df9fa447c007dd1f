"""Answering with an agent version: the one path runs (API, Celery) and chat turns share.

    answer = answer_with_version(version, messages=[...], context=UsageContext(...))

In order: blocked topics in the question are refused before any call; the response cache is
asked (agents/cache/responses.py: exact tier on by default, semantic tier opt-in); the tool
loop runs (streaming when `on_event` is given); an output schema is enforced with one repair round;
blocked output patterns and the run's cost cap are checked; a complete answer that used no
side-effect or time-dependent tool is cached.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import jsonschema

from agents.cache import responses as cache
from agents.gateway.calls import UsageContext
from agents.models import AgentVersion
from agents.providers.base import Message, TextDelta, Usage
from agents.tools.base import ToolContext
from agents.tools.loop import LoopResult, OnEvent, ToolStep, run_tool_loop


@dataclass
class AgentAnswer:
    text: str
    ok: bool
    error: str = ""
    data: Any = None  # the parsed answer when the version has an output schema
    tool_steps: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal = Decimal(0)
    cache_hit: bool = False
    cache_entry_id: int | None = None  # the entry that answered, on a hit
    latency_ms: int = 0


def schema_instruction(schema: dict[str, Any]) -> str:
    return (
        "\n\nAnswer with a single JSON value and nothing else (no prose, no code fences). "
        f"It must match this JSON schema:\n{json.dumps(schema, indent=1)}"
    )


def _schema_error(text: str, schema: dict[str, Any]) -> tuple[Any, str]:
    """(parsed value, "") or (None, what is wrong, naming the path)."""
    candidate = text.strip()
    if candidate.startswith("```"):
        candidate = re.sub(r"^```[a-zA-Z]*\n?|```$", "", candidate).strip()
    try:
        value = json.loads(candidate)
    except json.JSONDecodeError as exc:
        return None, f"the answer is not JSON ({exc.msg} at position {exc.pos})"
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path)
    )
    if errors:
        where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in errors[0].path)
        return None, f"at {where}: {errors[0].message}"
    return value, ""


def _blocked(text: str, patterns: list[str]) -> str | None:
    for pattern in patterns:
        if re.search(pattern, text, flags=re.IGNORECASE):
            return pattern
    return None


def _steps_json(steps: list[ToolStep]) -> list[dict[str, Any]]:
    return [step.as_json() for step in steps]


def answer_with_version(
    version: AgentVersion,
    *,
    messages: list[Message],
    context: UsageContext,
    on_event: OnEvent | None = None,
) -> AgentAnswer:
    """Raises GatewayError / ApplicationError (budget refusals, unknown model) for the caller
    to record; guardrail outcomes come back as `ok=False` answers."""
    started = time.perf_counter()
    question = messages[-1].content if messages else ""
    blocked = _blocked(question, version.blocked_patterns)
    if blocked is not None:
        return AgentAnswer(
            text="",
            ok=False,
            error=f"The question touches a blocked topic ({blocked!r}); nothing was sent.",
        )
    key = (
        cache.cache_key(version, messages, user_id=context.user_id)
        if version.cache_enabled
        else None
    )
    if key is not None:
        hit = cache.lookup(version, key, context=context)
        if hit is not None:
            entry = hit.entry
            if on_event is not None:
                on_event(TextDelta(entry.answer))
            data = (
                _schema_error(entry.answer, version.output_schema)[0]
                if version.output_schema
                else None
            )
            return AgentAnswer(
                text=entry.answer,
                ok=True,
                data=data,
                tool_steps=list(entry.tool_steps),
                cache_hit=True,
                cache_entry_id=entry.pk,
                latency_ms=int((time.perf_counter() - started) * 1000),
            )

    schema = version.output_schema
    system = version.system_prompt + (schema_instruction(schema) if schema else "")
    tool_context = ToolContext(
        agent_id=version.agent_id, knowledge_base_ids=tuple(version.knowledge_base_ids)
    )

    def loop(conversation: list[Message], spent: Decimal) -> LoopResult:
        return run_tool_loop(
            model=version.model,
            messages=conversation,
            tool_names=list(version.tools),
            system=system,
            max_tool_calls=version.max_tool_calls,
            temperature=version.temperature,
            max_tokens=version.max_tokens,
            output_schema=schema,
            context=replace(context, run_spent_usd=context.run_spent_usd + spent),
            tool_context=tool_context,
            on_event=on_event,
        )

    result = loop(list(messages), Decimal(0))
    steps, usage, cost = list(result.steps), result.usage, result.cost_usd
    answer = AgentAnswer(text=result.text, ok=not result.stopped_by_guardrail)
    if result.stopped_by_guardrail:
        answer.error = result.text
    elif schema:
        data, problem = _schema_error(result.text, schema)
        if problem:  # one repair round, with the problem named
            repair = [
                *messages,
                Message(role="assistant", content=result.text),
                Message(
                    role="user",
                    content=f"Your answer does not match the required JSON schema: {problem}. "
                    "Answer again with only the corrected JSON.",
                ),
            ]
            result = loop(repair, cost)
            steps += result.steps
            usage, cost = usage + result.usage, cost + result.cost_usd
            answer.text = result.text
            data, problem = _schema_error(result.text, schema)
        if problem:
            answer.ok, answer.error = (
                False,
                f"The answer does not match the output schema: {problem}.",
            )
        answer.data = data
    if answer.ok:
        pattern = _blocked(answer.text, version.blocked_patterns)
        if pattern is not None:
            answer.text, answer.data = "", None
            answer.ok, answer.error = False, f"The answer matched a blocked pattern ({pattern!r})."
    cap = version.max_cost_per_run_usd
    if answer.ok and cap is not None and context.run_spent_usd + cost > cap:
        answer.ok = False
        answer.error = (
            f"The run cost ${context.run_spent_usd + cost} which is over its cap of ${cap}."
        )
    answer.tool_steps, answer.usage, answer.cost_usd = _steps_json(steps), usage, cost
    if key is not None and cache.cacheable(
        ok=answer.ok, text=answer.text, stop_reason=result.stop_reason, tool_steps=answer.tool_steps
    ):
        cache.store(
            version,
            key,
            messages,
            answer=answer.text,
            tool_steps=answer.tool_steps,
            cost_usd=cost,
            input_tokens=usage.tokens_in,
            output_tokens=usage.output_tokens,
        )
    answer.latency_ms = int((time.perf_counter() - started) * 1000)
    return answer
