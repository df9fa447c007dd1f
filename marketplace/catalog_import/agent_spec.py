"""Checking an agent spec as a catalogue file gives it: the settings `agents.settings_schema`
defines, in the shape `marketplace.snapshot.agent_spec` writes (every field present, nothing
else), with the limits a catalogue agent has (the `default` model alias, no workspace tools)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from agents.models import MemoryMode
from agents.settings_schema import (
    MAX_TOKENS,
    NAME_MAX_LENGTH,
    SPEC_FIELDS,
    SPEC_MAX_TOOL_CALLS,
    SPEC_MEMORY_TURNS,
    SPEC_OPTIONAL_FIELDS,
    SPEC_REQUIRED_FIELDS,
    TEMPERATURE_MAX,
    TEMPERATURE_MIN,
    IntRange,
    output_schema_problem,
)
from agents.tools.registry import BUILTIN_TOOLS
from marketplace.catalog_import.items import DEFAULT_MODEL, Problems

# knowledge_search needs a workspace's knowledge base, which a catalogue listing cannot bring.
CATALOG_EXCLUDED_TOOLS = frozenset({"knowledge_search"})
SPEC_WHOLE_NUMBERS: tuple[tuple[str, IntRange], ...] = (
    ("max_tokens", MAX_TOKENS),
    ("memory_turns", SPEC_MEMORY_TURNS),
    ("max_tool_calls", SPEC_MAX_TOOL_CALLS),
)


def catalog_tools() -> frozenset[str]:
    """Tool names a catalogue agent may use: the built-in tools that need no workspace data."""
    return frozenset(BUILTIN_TOOLS) - CATALOG_EXCLUDED_TOOLS


def validate_agent_spec(spec: Any, where: str, problems: Problems) -> None:
    """An agent spec as the publish service writes it (every field present, nothing else)."""
    if not isinstance(spec, dict):
        problems.add(where, "must be a mapping of agent settings")
        return
    missing = [f for f in SPEC_REQUIRED_FIELDS if f not in spec]
    unknown = sorted(set(spec) - set(SPEC_FIELDS))
    if missing:
        problems.add(where, f"missing {', '.join(missing)}")
    if unknown:
        problems.add(where, f"unknown field(s) {', '.join(unknown)}")
    _check_profile(spec, where, problems)
    _check_model_settings(spec, where, problems)
    _check_tools(spec.get("tools", []), where, problems)
    if "memory_mode" in spec and spec["memory_mode"] not in MemoryMode.values:
        problems.add(f"{where}.memory_mode", f"must be one of {', '.join(MemoryMode.values)}")
    _check_guardrails(spec, where, problems)
    for flag in ("cache_enabled", *SPEC_OPTIONAL_FIELDS):
        if flag in spec and not isinstance(spec[flag], bool):
            problems.add(f"{where}.{flag}", "must be true or false")


def _check_profile(spec: dict[str, Any], where: str, problems: Problems) -> None:
    name = spec.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= NAME_MAX_LENGTH:
        problems.add(f"{where}.name", f"must be 1–{NAME_MAX_LENGTH} characters")
    for text in ("description", "category"):
        if text in spec and not isinstance(spec[text], str):
            problems.add(f"{where}.{text}", "must be a string")


def _check_model_settings(spec: dict[str, Any], where: str, problems: Problems) -> None:
    if "model" in spec and spec["model"] != DEFAULT_MODEL:
        problems.add(f"{where}.model", f"must be the alias '{DEFAULT_MODEL}'")
    prompt = spec.get("system_prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        problems.add(f"{where}.system_prompt", "must be a non-empty string")
    temperature = spec.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, int | float)
        or isinstance(temperature, bool)
        or not TEMPERATURE_MIN <= temperature <= TEMPERATURE_MAX
    ):
        problems.add(
            f"{where}.temperature",
            f"must be a number from {TEMPERATURE_MIN} to {TEMPERATURE_MAX}, or null",
        )
    for number, bounds in SPEC_WHOLE_NUMBERS:
        if number in spec and spec[number] not in bounds:
            problems.add(
                f"{where}.{number}", f"must be a whole number from {bounds.low} to {bounds.high}"
            )


def _check_tools(tools: Any, where: str, problems: Problems) -> None:
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        problems.add(f"{where}.tools", "must be a list of tool names")
        return
    allowed = catalog_tools()
    unknown_tools = [t for t in tools if t not in allowed]
    if unknown_tools:
        problems.add(
            f"{where}.tools",
            f"unknown tool(s) {', '.join(unknown_tools)} (tools: {', '.join(sorted(allowed))})",
        )


def _check_guardrails(spec: dict[str, Any], where: str, problems: Problems) -> None:
    cap = spec.get("max_cost_per_run_usd")
    if cap is not None:
        try:
            valid_cap = isinstance(cap, str) and Decimal(cap) > 0
        except InvalidOperation:
            valid_cap = False
        if not valid_cap:
            problems.add(f"{where}.max_cost_per_run_usd", "must be a positive decimal string")
    patterns = spec.get("blocked_patterns", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        problems.add(f"{where}.blocked_patterns", "must be a list of regular expressions")
    else:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.add(f"{where}.blocked_patterns", f"{pattern!r}: {exc}")
    schema = spec.get("output_schema")
    if schema is not None:
        problem = output_schema_problem(schema)
        if problem:
            problems.add(f"{where}.output_schema", problem)
