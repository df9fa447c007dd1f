"""The semantic tier's distance threshold per embedder, and the accuracy it was measured at.

The figures come from `bench/cache_accuracy.py --write`, which runs the labelled reference set
that ships with the project (`agents/cache/reference.jsonl`) through the cache's own functions:
the threshold is chosen on one half of the pairs (the calibration fold) and the accuracy shown
to users is measured on the other half (the held-out fold), so it is not flattered by the
choice. An embedder without a calibration serves no semantic hits unless an operator sets
`RESPONSE_CACHE_MAX_DISTANCE` (and then no accuracy is claimed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.conf import settings

from agents.embeddings import EMBEDDERS

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
REFERENCE_FILE = Path(__file__).with_name("reference.jsonl")


@dataclass(frozen=True)
class Calibration:
    embedder: str
    threshold: float
    pairs: int  # held-out pairs the figures below were measured on
    paraphrase_hit_pct: float  # paraphrases answered from the cache
    wrong_hit_pct: float  # served answers that were for a different question
    measured_on: str

    def summary(self) -> str:
        return (
            f"Measured on {self.pairs} held-out pairs of the reference set with the "
            f"{self.embedder} embedder: {self.paraphrase_hit_pct:.0f} % of rephrased questions "
            f"were answered from the cache, and {self.wrong_hit_pct:.1f} % of cache answers were "
            "for a different question."
        )


@cache
def _calibrations() -> dict[str, Calibration]:
    if not CALIBRATION_FILE.exists():
        return {}
    data = json.loads(CALIBRATION_FILE.read_text())
    return {name: Calibration(embedder=name, **values) for name, values in data.items()}


def calibration_for(embedder_name: str) -> Calibration | None:
    return _calibrations().get(embedder_name)


def max_distance(embedder_name: str) -> float | None:
    """The semantic tier's threshold: the operator's override, else the calibrated one, else
    None (no semantic hits)."""
    override: float | None = settings.RESPONSE_CACHE_MAX_DISTANCE
    if override is not None:
        return override
    calibration = calibration_for(embedder_name)
    return calibration.threshold if calibration else None


def configured_embedder_name() -> str:
    """The name the EMBEDDER setting's embedder records, without loading it."""

    embedder = EMBEDDERS.get(settings.EMBEDDER)
    return embedder.name if embedder else settings.EMBEDDER


def semantic_accuracy_statement() -> str:
    return accuracy_statement(configured_embedder_name())


def accuracy_statement(embedder_name: str) -> str:
    """What a person turning the semantic tier on is told about its accuracy."""
    if settings.RESPONSE_CACHE_MAX_DISTANCE is not None:
        return (
            "The distance threshold is set by the operator (RESPONSE_CACHE_MAX_DISTANCE = "
            f"{settings.RESPONSE_CACHE_MAX_DISTANCE}), so no measured accuracy applies."
        )
    calibration = calibration_for(embedder_name)
    if calibration is None:
        return (
            f"The {embedder_name} embedder has not been calibrated, so the semantic tier serves "
            "nothing until an operator calibrates it or sets RESPONSE_CACHE_MAX_DISTANCE."
        )
    return calibration.summary()
