"""The semantic floor of marketplace search: the cosine distance beyond which a listing is not
"similar in meaning" to a query, per embedder.

The floors come from `bench/search_relevance.py --write` (marketplace/search_calibration.json):
chosen on one half of a set of gibberish and off-topic queries so that none of them comes that
close to any catalogue listing, and checked on the other half and on labelled real queries.
Invariant: a query the floor was not calibrated for gets no semantic hits at all (keyword
hits only) unless an operator sets `MARKETPLACE_SEMANTIC_MAX_DISTANCE`; nearest is never
taken to mean near.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from django.conf import settings

CALIBRATION_FILE = Path(__file__).with_name("search_calibration.json")


@cache
def _floors() -> dict[str, float]:
    if not CALIBRATION_FILE.exists():
        return {}
    data = json.loads(CALIBRATION_FILE.read_text())
    return {name: float(values["floor"]) for name, values in data.items()}


def semantic_max_distance(embedder_name: str) -> float | None:
    """The operator's override, else the calibrated floor of `embedder_name`, else None (no
    semantic hits)."""
    override: float | None = settings.MARKETPLACE_SEMANTIC_MAX_DISTANCE
    if override is not None:
        return override
    return _floors().get(embedder_name)
