"""The bounds a workspace's plan puts on workflow definitions (the validators enforce them; the
engine re-checks map items at run time, when the list is known).

There are no per-workspace plans yet, so every workspace gets the platform's settings:
`WORKFLOW_LIMITS` (a dict, config/settings/base.py), each value overridable on its own with
`WORKFLOW_MAX_STEPS`, `WORKFLOW_MAX_FAN_OUT`, `WORKFLOW_MAX_MAP_CONCURRENCY` and
`WORKFLOW_MAX_MAP_ITEMS`. When plans arrive, this is the one function that reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, int] = {
    "max_steps": 100,
    "max_fan_out": 20,
    "max_map_concurrency": 10,
    "max_map_items": 1000,
}


@dataclass(frozen=True)
class Limits:
    max_steps: int
    max_fan_out: int
    max_map_concurrency: int
    max_map_items: int


def _setting(key: str) -> int:
    configured: dict[str, Any] = getattr(settings, "WORKFLOW_LIMITS", None) or {}
    value = getattr(settings, f"WORKFLOW_{key.upper()}", configured.get(key, DEFAULTS[key]))
    return int(value)


def plan_limits() -> Limits:
    """The limits of the current workspace's plan."""
    return Limits(**{key: _setting(key) for key in DEFAULTS})
