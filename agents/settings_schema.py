"""An agent's settings, defined once: their names, bounds and the output-format check.

The agent page's form (`agents.forms.AgentForm`), the API's input serializer
(`agents.api.serializers.AgentConfigInput`), the service that saves a version
(`agents.services`), the marketplace snapshot (`marketplace.snapshot.agent_spec`) and the
catalogue importer (`marketplace.catalog_import.agent_spec`) read them from here; a new setting
is added here first. Where a surface accepts a narrower or wider range than the others, the
difference is named here too (`PAGE_*`, `SPEC_*`), so it is a decision, not a drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import jsonschema


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int

    def __contains__(self, value: object) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.low <= value <= self.high
        )


# The agent's own fields (not versioned).
NAME_MAX_LENGTH = 80
DESCRIPTION_MAX_LENGTH = 300
CATEGORY_MAX_LENGTH = 40
PROFILE_FIELDS = ("name", "description", "category")

# What an AgentVersion stores, in the order pages, APIs and specs show it.
VERSION_FIELDS = (
    "model",
    "system_prompt",
    "temperature",
    "max_tokens",
    "tools",
    "memory_mode",
    "memory_turns",
    "max_tool_calls",
    "max_cost_per_run_usd",
    "blocked_patterns",
    "output_schema",
    "knowledge_base_ids",
    "cache_enabled",
    "cache_semantic",
    "cache_verify",
    "cache_per_user",
)
MODEL_MAX_LENGTH = 170
TEMPERATURE_MIN, TEMPERATURE_MAX = 0, 2
MAX_TOKENS = IntRange(1, 200_000)
MAX_TOKENS_DEFAULT = 1024
MAX_TOOL_CALLS = IntRange(0, 50)
MAX_TOOL_CALLS_DEFAULT = 8
MEMORY_TURNS = IntRange(1, 100)
MEMORY_TURNS_DEFAULT = 10
# The page offers fewer remembered turns than the API accepts.
PAGE_MEMORY_TURNS = IntRange(1, 50)
COST_CAP_MAX_DIGITS, COST_CAP_DECIMAL_PLACES = 10, 4
COST_CAP_MIN = Decimal("0.0001")  # the page's smallest cap; the API and service take any > 0

# A spec: an agent as a marketplace snapshot or a catalogue file carries it. Knowledge bases
# stay in their workspace, so `knowledge_base_ids` is never part of it.
SPEC_FIELDS = PROFILE_FIELDS + tuple(f for f in VERSION_FIELDS if f != "knowledge_base_ids")
# Settings newer than the catalogue format: a spec may leave them out.
SPEC_OPTIONAL_FIELDS = ("cache_semantic", "cache_verify", "cache_per_user")
SPEC_REQUIRED_FIELDS = tuple(f for f in SPEC_FIELDS if f not in SPEC_OPTIONAL_FIELDS)
# Published specs predate the page's limits: no memory turns, and more tool calls, are kept.
SPEC_MEMORY_TURNS = IntRange(0, 100)
SPEC_MAX_TOOL_CALLS = IntRange(0, 100)


def output_schema_problem(schema: Any) -> str:
    """What is wrong with an output JSON schema, or "" when it is usable."""
    if not isinstance(schema, dict):
        return "The output format must be a JSON object (a JSON schema)."
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the schema"
        return f"Not a valid JSON schema at {where}: {exc.message}"
    return ""
