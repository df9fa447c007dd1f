"""How close gibberish, off-topic and real queries come to the shipped catalogue, per embedder,
and the semantic distance floor of marketplace search chosen from that.

    .venv/bin/python bench/search_relevance.py [--write]

No database: the 73 listings of `marketplace/catalog/` are embedded exactly as
`marketplace.search_index` embeds them (`embedding_text`), and the cosine distance of each query
to each listing is computed here (the vectors are L2-normalised, so it is `1 - dot`, the number
pgvector's `<=>` returns).

Queries (all fixed or seeded, so every run measures the same thing):

- **noise**: 400 random lowercase strings (4–10 letters, seed 7), a few keyboard mashes such as
  `xyzzyqq`, and 40 off-topic questions ("banana bread recipe") that no listing is about. No
  listing is relevant to any of them.
- **labelled**: 30 real questions, each with the listings a person would want (judged by hand
  from the titles and summaries).

The floor is chosen on the calibration fold of the noise queries (even positions): the largest
distance, rounded down to 0.01, at which no calibration noise query comes close to any listing.
The figures that count are measured on the held-out fold (odd positions) and on the labelled
queries: how many noise queries still get a semantic hit, what share of relevant listings fall
within the floor (recall) and what share of the semantic hits of labelled queries are relevant
(precision). Keyword search is not involved: a listing that contains the query's words is
found by the full-text side whatever the floor.

`--embedders hashing,local,openai` picks what to measure. `--write` records each measured
embedder's floor and figures in marketplace/search_calibration.json (others are kept), which
`marketplace.selectors.listing_search` reads.

Last line:
    hashing_floor=… hashing_noise_hit_pct=… hashing_recall_pct=… [local_floor=… …]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import string
import sys
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, where bench/http.py would hide
# the standard library's `http` package (Django imports it): the project's root instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

SEED = 7
RANDOM_STRINGS = 400
MASHES = ["xyzzyqq", "asdfghjkl", "qwertyuiop", "zxcvbnm", "qqqq wwww", "hjkl hjkl", "blorptang"]
OFF_TOPIC = [
    "banana bread recipe",
    "quantum chromodynamics",
    "medieval castle architecture",
    "football world cup results",
    "knitting patterns for scarves",
    "volcano eruption",
    "guitar chords",
    "dog grooming",
    "weather tomorrow",
    "ancient rome emperors",
    "how to bake sourdough",
    "tropical fish aquarium",
    "car engine oil change",
    "yoga poses for beginners",
    "chess openings",
    "best hiking trails in the alps",
    "how tall is mount everest",
    "vegan lasagna",
    "train tickets to paris",
    "birthday party ideas for kids",
    "planting tomatoes",
    "origami crane",
    "black holes and dark matter",
    "piano lessons",
    "wedding dress",
    "fishing rod",
    "bicycle repair",
    "jazz history",
    "coffee brewing",
    "pottery glaze",
    "skateboard tricks",
    "hamster cage",
    "ski resort",
    "poetry of the romantic era",
    "solar eclipse",
    "marathon training",
    "wine tasting",
    "roof tiles",
    "sunflower seeds",
    "violin strings",
]
LABELLED: dict[str, set[str]] = {
    "invoice": {"invoice-data-extractor"},
    "invoices to pay": {"invoice-data-extractor"},
    "bot that answers customer emails": {"support-reply-drafter", "ticket-triage-and-reply"},
    "refund": {"refund-policy-checker"},
    "write sql": {"sql-writer", "sql-review-and-optimize", "sql-explainer"},
    "hiring": {
        "application-screener",
        "interview-question-generator",
        "job-description-writer",
        "job-post-to-interview-kit",
        "onboarding-planner",
    },
    "contract review": {"contract-risk-review", "contract-clause-explainer", "nda-triage"},
    "phishing": {"phishing-analyzer"},
    "quiz": {"quiz-generator", "lesson-to-quiz"},
    "meeting notes action items": {"meeting-actions-extractor"},
    "help me recruit engineers": {
        "application-screener",
        "interview-question-generator",
        "job-description-writer",
        "job-post-to-interview-kit",
    },
    "check my grammar": {"proofreader", "plain-language-editor"},
    "plan my day": {"daily-planner"},
    "explain this legal clause": {"contract-clause-explainer"},
    "suspicious email": {"phishing-analyzer"},
    "summarise long email threads": {"email-summarizer", "escalation-summarizer"},
    "teach a student": {"socratic-tutor", "lesson-planner"},
    "security alerts": {"security-incident-triage"},
    "blog writing": {"blog-outline", "seo-brief-builder", "content-production-pipeline"},
    "product descriptions for my shop": {"product-description-writer"},
    "schedule a meeting across time zones": {"meeting-scheduler"},
    "budget vs actual": {"budget-variance-explainer"},
    "categorise expenses": {"expense-categorizer"},
    "code review": {"code-reviewer", "pull-request-review-digest", "sql-review-and-optimize"},
    "qualify sales leads": {"inbound-lead-qualifier"},
    "outage update for customers": {"incident-status-writer"},
    "regular expression": {"regex-builder"},
    "user feedback": {"feedback-theme-finder", "interview-synthesizer"},
    "write release notes": {"release-announcement", "commit-message-writer"},
    "translate": {"product-translation-qa"},
}
CALIBRATION_FILE = ROOT / "marketplace" / "search_calibration.json"


def noise_queries() -> list[str]:
    rng = random.Random(SEED)
    letters = string.ascii_lowercase
    randoms = [
        "".join(rng.choice(letters) for _ in range(rng.randint(4, 10)))
        for _ in range(RANDOM_STRINGS)
    ]
    return MASHES + OFF_TOPIC + randoms


def catalogue() -> tuple[list[str], list[str]]:
    """(slugs, embedding texts) of the shipped catalogue, as the importer stores them."""
    from marketplace.catalog_import.reading import read_folder
    from marketplace.catalog_import.writing import listing_metadata
    from marketplace.search_index import embedding_text

    items, errors = read_folder(ROOT / "marketplace" / "catalog")
    if errors:
        raise SystemExit(f"The catalogue does not read: {errors[0]}")
    slugs, texts = [], []
    for item in items:
        meta = listing_metadata(item.data)
        slugs.append(item.slug)
        texts.append(
            embedding_text(
                title=meta["title"],
                summary=meta["summary"],
                tags=meta["tags"],
                description=meta["description"],
            )
        )
    return slugs, texts


def distances(query_vectors: list[list[float]], docs: list[list[float]]) -> list[list[float]]:
    return [
        [1.0 - sum(a * b for a, b in zip(q, d, strict=True)) for d in docs] for q in query_vectors
    ]


def measure(embedder: Any, slugs: list[str], texts: list[str]) -> dict[str, Any]:
    docs = embedder.embed(texts)
    noise = noise_queries()
    noise_d = distances(embedder.embed(noise), docs)
    calibration = [min(row) for i, row in enumerate(noise_d) if i % 2 == 0]
    held_out = [row for i, row in enumerate(noise_d) if i % 2 == 1]
    floor = math.floor(min(calibration) * 100) / 100
    if floor >= min(calibration):  # an exact hundredth: stay strictly below it
        floor = round(floor - 0.01, 2)
    noise_hits = sum(1 for row in held_out if min(row) <= floor)
    noise_pairs = sum(1 for row in held_out for d in row if d <= floor)

    labelled = list(LABELLED)
    label_d = distances(embedder.embed(labelled), docs)
    relevant = found = hits = hits_relevant = 0
    first_right = 0
    for query, row in zip(labelled, label_d, strict=True):
        wanted = LABELLED[query]
        relevant += len(wanted)
        within = {slugs[i] for i, d in enumerate(row) if d <= floor}
        found += len(within & wanted)
        hits += len(within)
        hits_relevant += len(within & wanted)
        nearest = slugs[min(range(len(row)), key=row.__getitem__)]
        first_right += nearest in wanted
    return {
        "floor": floor,
        "listings": len(slugs),
        "noise_queries": len(held_out),
        "noise_nearest_min": round(min(min(row) for row in held_out), 4),
        "noise_hit_pct": round(100 * noise_hits / len(held_out), 1),
        "noise_pair_hit_pct": round(100 * noise_pairs / (len(held_out) * len(slugs)), 3),
        "labelled_queries": len(labelled),
        "recall_pct": round(100 * found / relevant, 1),
        "precision_pct": round(100 * hits_relevant / hits, 1) if hits else None,
        "nearest_right_pct": round(100 * first_right / len(labelled), 1),
        "measured_on": date.today().isoformat(),  # noqa: DTZ011
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write", action="store_true", help=f"record the floors in {CALIBRATION_FILE.name}"
    )
    parser.add_argument(
        "--embedders",
        default="hashing,local",
        help="comma-separated EMBEDDER values to measure (openai needs its key and network)",
    )
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()
    from agents.embeddings import EMBEDDERS, EmbeddingError, get_embedder

    slugs, texts = catalogue()
    results: dict[str, dict[str, Any]] = {}
    for kind in args.embedders.split(","):
        try:
            embedder = get_embedder(kind)
        except EmbeddingError as exc:
            print(f"• {kind}: not installed, not measured ({exc})", file=sys.stderr)
            continue
        print(f"• measuring {EMBEDDERS[kind].name}", file=sys.stderr)
        results[embedder.name] = measure(embedder, slugs, texts)

    print(
        "| embedder | floor | held-out noise queries with a hit | noise pairs within | "
        "nearest noise | recall (labelled) | precision | nearest is right |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        precision = "—" if r["precision_pct"] is None else f"{r['precision_pct']} %"
        print(
            f"| {name} | {r['floor']} | {r['noise_hit_pct']} % of {r['noise_queries']} | "
            f"{r['noise_pair_hit_pct']} % | {r['noise_nearest_min']} | {r['recall_pct']} % | "
            f"{precision} | {r['nearest_right_pct']} % |"
        )
    if args.write:
        # Embedders not measured in this run keep their recorded floor.
        kept = json.loads(CALIBRATION_FILE.read_text()) if CALIBRATION_FILE.exists() else {}
        CALIBRATION_FILE.write_text(json.dumps({**kept, **results}, indent=2) + "\n")
        print(f"• written to {CALIBRATION_FILE.relative_to(ROOT)}", file=sys.stderr)
    short = {"hashing-v2": "hashing", "local-all-minilm-l6-v2": "local"}
    print(
        " ".join(
            f"{short.get(name, name)}_{key}={r[value]}"
            for name, r in results.items()
            for key, value in (
                ("floor", "floor"),
                ("noise_hit_pct", "noise_hit_pct"),
                ("recall_pct", "recall_pct"),
            )
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
