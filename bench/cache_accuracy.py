"""How often the response cache answers a rephrased question, and how often it answers a
different one, on the labelled reference set (agents/cache/reference.jsonl).

    .venv/bin/python bench/cache_accuracy.py [--write]

Self-contained like bench/gateway.py: embedded PostgreSQL and Valkey in .local/bench/, a fresh
database (dropped at the end) and one workspace. Every pair goes through the cache's own
functions: `agents.cache.responses.store` of question a, then `agents.cache.responses.lookup` of
question b (the entry is dropped after each pair, so each lookup sees only its own candidate).

Configurations: the default (exact tier only, hashing embedder), then the semantic tier with
each embedder that is installed (`local` needs the local-embeddings extra; the bench says so
when it is missing). For the semantic tier the distance threshold is chosen on the calibration
fold (even pair numbers): the largest distance at which no near-miss is served there; the
figures that count are those of the held-out fold (odd numbers). `--write` records each
embedder's threshold and held-out figures in agents/cache/calibration.json, which the agent
form shows to whoever turns the semantic tier on. The model check (`cache_verify`) needs a real
model and is not measured here.

Last line:
    cache_wrong_hit_pct=… cache_paraphrase_hit_pct=… cache_hit_p95_ms=…
    semantic_wrong_hit_pct=… semantic_paraphrase_hit_pct=…
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, where bench/http.py would hide
# the standard library's `http` package (Django imports it): the project's root instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench.gateway import admin_sql, drop_database, p95, say, setup_workspace  # noqa: E402

SEARCH_LIMIT = 2.0  # cosine distance never exceeds 2: every candidate reaches the guard
WRONG_HIT_TARGET_PCT = 1.0


@dataclass
class Outcome:
    pair: dict[str, Any]
    hit: bool
    distance: float  # of the two questions, whether served or not
    guard_passed: bool
    lookup_s: float


def held_out(pair: dict[str, Any]) -> bool:
    return int(pair["id"].rsplit("-", 1)[1]) % 2 == 1


def load_pairs() -> list[dict[str, Any]]:
    from agents.cache.calibration import REFERENCE_FILE

    return [json.loads(line) for line in REFERENCE_FILE.read_text().splitlines() if line]


def run_pairs(
    pairs: list[dict[str, Any]], *, access: Any, embedder: str, semantic: bool, limit: float | None
) -> list[Outcome]:
    from decimal import Decimal

    from django.conf import settings

    from agents import services
    from agents.cache import guard as cache_guard
    from agents.cache import responses as cache
    from agents.embeddings import get_embedder
    from agents.gateway.calls import UsageContext
    from agents.models import CachedResponse
    from agents.providers.base import Message

    settings.EMBEDDER = embedder
    settings.RESPONSE_CACHE_MAX_DISTANCE = limit
    agent = services.agent_create(
        access=access,
        name=f"Bench {embedder} {'semantic' if semantic else 'exact'} {time.monotonic_ns()}",
        model="offline:demo",
        cache_enabled=True,
        cache_semantic=semantic,
    )
    version = agent.current_version
    assert version is not None
    model = get_embedder()
    context = UsageContext(agent_id=agent.pk)
    outcomes = []
    for index, pair in enumerate(pairs):
        cached = [Message(role="user", content=pair["a"])]
        asked = [Message(role="user", content=pair["b"])]
        cache.store(
            version,
            cache.cache_key(version, cached, user_id=None),
            cached,
            answer=f"The answer to: {pair['a']}",
            tool_steps=[],
            cost_usd=Decimal("0.002"),
            input_tokens=100,
            output_tokens=50,
        )
        started = time.perf_counter()  # the answer path's work: the key, then the lookup
        hit = cache.lookup(version, cache.cache_key(version, asked, user_id=None), context=context)
        elapsed = time.perf_counter() - started
        CachedResponse.objects.all().delete()
        a, b = model.embed([cache_guard.normalise(pair["a"]), cache_guard.normalise(pair["b"])])
        distance = 1 - sum(x * y for x, y in zip(a, b, strict=True))
        outcomes.append(
            Outcome(
                pair=pair,
                hit=hit is not None,
                distance=distance,
                guard_passed=cache_guard.near_miss(pair["a"], pair["b"]) is None,
                lookup_s=elapsed,
            )
        )
        if (index + 1) % 100 == 0:
            say(f"  {embedder} {'semantic' if semantic else 'exact'}: {index + 1}/{len(pairs)}")
    return outcomes


def figures(outcomes: list[Outcome]) -> tuple[float, float, int]:
    """(paraphrase hit %, wrong-hit % of hits, hits)."""
    paraphrases = [o for o in outcomes if o.pair["same"]]
    hits = [o for o in outcomes if o.hit]
    wrong = [o for o in hits if not o.pair["same"]]
    para_pct = 100 * sum(o.hit for o in paraphrases) / max(len(paraphrases), 1)
    wrong_pct = 100 * len(wrong) / len(hits) if hits else 0.0
    return para_pct, wrong_pct, len(hits)


def calibrate(outcomes: list[Outcome]) -> float:
    """The largest distance at which the calibration fold's served answers are all right."""
    fold = [o for o in outcomes if not held_out(o.pair) and o.guard_passed]
    wrong = sorted(o.distance for o in fold if not o.pair["same"])
    right = sorted(o.distance for o in fold if o.pair["same"])
    ceiling = wrong[0] if wrong else SEARCH_LIMIT
    below = [d for d in right if d < ceiling]
    if not below:
        return 0.0
    # Halfway between the last paraphrase served and the first near-miss, never past it.
    return round((below[-1] + ceiling) / 2, 4) if wrong else round(below[-1] + 0.01, 4)


def quartiles(values: list[float]) -> str:
    if len(values) < 4:
        return "—"
    q = statistics.quantiles(values, n=4, method="inclusive")
    return f"{min(values):.3f} / {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f} / {max(values):.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--write", action="store_true", help="record thresholds in agents/cache/calibration.json"
    )
    args = parser.parse_args(argv)
    database = f"bench_cache_{os.getpid()}"

    from config.embedded import embedded_services

    rows: list[tuple[str, list[Outcome], float | None]] = []
    calibrations: dict[str, dict[str, Any]] = {}
    missing_local = ""
    failed = False
    with contextlib.ExitStack() as stack:
        os.environ.update(stack.enter_context(embedded_services(root=ROOT / ".local" / "bench")))
        admin_sql("CREATE DATABASE {}", database)
        stack.callback(drop_database, database)
        os.environ["BENCH_DATABASE_NAME"] = database
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
        import django

        django.setup()
        from django_tenants.utils import schema_context

        from agents.embeddings import EMBEDDERS, EmbeddingError, get_embedder
        from tenants.permissions import Access

        pairs = load_pairs()
        say(f"• {len(pairs)} labelled pairs ({sum(p['same'] for p in pairs)} paraphrases)")
        try:
            workspace, user = setup_workspace()
            access = Access(workspace=workspace, user=user, role="owner")
            embedders = ["hashing"]
            try:
                get_embedder("local")
                embedders.append("local")
            except EmbeddingError as exc:
                missing_local = str(exc)
            with schema_context(workspace.schema_name):
                exact = run_pairs(
                    pairs, access=access, embedder="hashing", semantic=False, limit=None
                )
                rows.append(("exact (default), hashing", exact, None))
                for kind in embedders:
                    name = EMBEDDERS[kind].name
                    probe = run_pairs(
                        pairs, access=access, embedder=kind, semantic=True, limit=SEARCH_LIMIT
                    )
                    threshold = calibrate(probe)
                    say(f"• {name}: threshold {threshold} from the calibration fold")
                    final = run_pairs(
                        pairs, access=access, embedder=kind, semantic=True, limit=threshold
                    )
                    rows.append((f"semantic, {kind}", final, threshold))
                    para, wrong, _ = figures([o for o in final if held_out(o.pair)])
                    calibrations[name] = {
                        "threshold": threshold,
                        "pairs": sum(held_out(p) for p in pairs),
                        "paraphrase_hit_pct": round(para, 1),
                        "wrong_hit_pct": round(wrong, 1),
                        "measured_on": date.today().isoformat(),  # noqa: DTZ011
                    }
        except BaseException:
            failed = True
            traceback.print_exc(file=sys.stderr)
    if failed:
        return 1

    print(
        "| configuration            | threshold | fold     | paraphrase hits | wrong hits "
        "| hits | lookup p50 ms | lookup p95 ms |"
    )
    print(
        "| ------------------------ | --------: | -------- | --------------: | ---------: "
        "| ---: | ------------: | ------------: |"
    )
    for label, outcomes, threshold in rows:
        for fold, chosen in (
            ("all", outcomes),
            ("held-out", [o for o in outcomes if held_out(o.pair)]),
        ):
            para, wrong, hits = figures(chosen)
            times = [o.lookup_s * 1000 for o in chosen]
            shown = "—" if threshold is None else f"{threshold:.4f}"
            print(
                f"| {label:<24} | {shown:>9} | {fold:<8} | {para:>14.1f}% | {wrong:>9.1f}% "
                f"| {hits:>4} | {statistics.median(times):>13.2f} | {p95(times):>13.2f} |"
            )
    print()
    print("Distances of the two questions (min / q1 / median / q3 / max), and the near-miss guard:")
    print("| embedder | pairs        | distance                                | guard passes |")
    print("| -------- | ------------ | --------------------------------------- | -----------: |")
    for label, outcomes, threshold in rows:
        if threshold is None:
            continue
        for kind, same in (("paraphrases", True), ("near-misses", False)):
            chosen = [o for o in outcomes if o.pair["same"] is same]
            passed = sum(o.guard_passed for o in chosen)
            spread = quartiles([o.distance for o in chosen])
            print(
                f"| {label.split(', ')[1]:<8} | {kind:<12} | {spread:<39} "
                f"| {passed:>4}/{len(chosen):<4}    |"
            )
    near_kinds = sorted({p["kind"] for p in load_pairs() if not p["same"]})
    print()
    print("Near-misses served, by kind (all pairs):")
    for label, outcomes, _ in rows:
        served = {k: sum(o.hit for o in outcomes if o.pair["kind"] == k) for k in near_kinds}
        print(f"  {label}: " + ", ".join(f"{k} {v}" for k, v in served.items()))
    if missing_local:
        print(f"\nThe local embedder is not installed, so it was not measured: {missing_local}")
    if args.write and calibrations:
        from agents.cache.calibration import CALIBRATION_FILE

        CALIBRATION_FILE.write_text(json.dumps(calibrations, indent=2) + "\n")
        say(f"• wrote {CALIBRATION_FILE}")

    default_para, default_wrong, _ = figures(rows[0][1])
    default_p95 = p95([o.lookup_s * 1000 for o in rows[0][1]])
    semantic = next((r for r in rows if r[0] == "semantic, local"), None)
    semantic_text = "semantic_wrong_hit_pct=n/a semantic_paraphrase_hit_pct=n/a"
    if semantic is not None:
        para, wrong, _ = figures([o for o in semantic[1] if held_out(o.pair)])
        semantic_text = f"semantic_wrong_hit_pct={wrong:.1f} semantic_paraphrase_hit_pct={para:.1f}"
        verdict = "met" if wrong <= WRONG_HIT_TARGET_PCT and para >= 30 else "MISSED"
        print(
            f"semantic tier, local embedder, held-out: target ≤ 1 % wrong at ≥ 30 % paraphrase "
            f"hits: {verdict}"
        )
    print(
        f"cache_wrong_hit_pct={default_wrong:.1f} cache_paraphrase_hit_pct={default_para:.1f} "
        f"cache_hit_p95_ms={default_p95:.2f} {semantic_text}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
