"""Reads for the usage page: spend and tokens by day, model and agent over a period, and what
the semantic cache answered and saved.

"Tokens in" is every input token a model read: uncached, read from the provider's prompt cache
and written to it (`Usage.tokens_in`; the run and chat pages use the same sum). The parts read
from and written to the cache are shown apart, since they are priced apart.

Rows whose provider did not report every count carry estimated tokens and are counted in
`estimated` (shown as "≈"). Rows still `pending` are attempts sent with no outcome recorded:
in progress, or interrupted (a worker died while waiting; the provider may have charged).
Embedding requests are rows with purpose `embedding`: they count in spend and tokens, not in
"calls" (which are model calls that answered) nor in the cache hit rate.

Cache hits are ledger rows too (`outcome="cached"`, `kind="cache"`, cost 0, `saved_usd` = what
the hit did not spend). They never count as model calls; wherever rows are grouped by provider
(the By model table, the CSV) they appear as provider `cache`, with their count in
`cached`/`cached_answers` and their savings in `saved`/`saved_usd`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import BooleanField, Case, Count, F, Q, Sum, Value, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from agents.models import Agent, CacheReport, UsageRecord
from tenants.permissions import Access, Perm

_EMBEDDING = Q(purpose=UsageRecord.Purpose.EMBEDDING)
_SUMS = {
    "cost": Sum("cost_usd"),
    "input_tokens": Sum(F("input_tokens") + F("cached_input_tokens") + F("cache_write_tokens")),
    "cached_tokens": Sum("cached_input_tokens"),
    "cache_write_tokens": Sum("cache_write_tokens"),
    "output_tokens": Sum("output_tokens"),
    "calls": Count("id", filter=Q(outcome=UsageRecord.Outcome.OK) & ~_EMBEDDING),
    "embeddings": Count("id", filter=Q(outcome=UsageRecord.Outcome.OK) & _EMBEDDING),
    "errors": Count("id", filter=Q(outcome=UsageRecord.Outcome.ERROR)),
    "pending": Count("id", filter=Q(outcome=UsageRecord.Outcome.PENDING)),
    "estimated": Count("id", filter=Q(estimated=True)),
    "cached": Count("id", filter=Q(outcome=UsageRecord.Outcome.CACHED)),
    "saved": Sum("saved_usd"),
    "checks": Count(
        "id",
        filter=Q(outcome=UsageRecord.Outcome.OK, purpose=UsageRecord.Purpose.CACHE_CHECK),
    ),
    "checks_cost": Sum("cost_usd", filter=Q(purpose=UsageRecord.Purpose.CACHE_CHECK)),
}
_MONEY = ("cost", "saved", "checks_cost")


@dataclass
class UsageReport:
    start: date
    end: date
    totals: dict[str, Any]
    days: list[dict[str, Any]]
    by_model: list[dict[str, Any]]
    by_agent: list[dict[str, Any]]
    cache_reports: int = 0  # cached answers people marked as wrong in the period

    @property
    def max_day_cost(self) -> Decimal:
        return max((d["cost"] for d in self.days), default=Decimal(0)) or Decimal(0)

    @property
    def cache_answers(self) -> int:
        """Answers in the period: model answers plus cache hits (a model's check of a
        semantic hit is a call, not an answer)."""
        return int(self.totals["calls"]) - int(self.totals["checks"]) + int(self.totals["cached"])

    @property
    def cache_net_saved(self) -> Decimal:
        """What cache hits did not spend, less what checking semantic hits cost."""
        return Decimal(self.totals["saved"]) - Decimal(self.totals["checks_cost"])

    @property
    def cache_hit_rate(self) -> float | None:
        """Cached answers / (cached + answered by a model); None when nothing was answered."""
        answers = self.cache_answers
        return int(self.totals["cached"]) / answers if answers else None

    @property
    def cache_hit_percent(self) -> str:
        rate = self.cache_hit_rate
        return "—" if rate is None else f"{rate * 100:.1f} %"


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """Sums over no rows are None: make them zero (grouping keys stay as they are)."""
    zero = {key: (Decimal(0) if key in _MONEY else 0) for key in _SUMS}
    return {k: (zero[k] if v is None and k in zero else v) for k, v in row.items()}


def usage_report(*, access: Access, days: int = 30) -> UsageReport:
    """Three grouped queries and a totals query, whatever the number of calls."""
    access.require(Perm.WORKSPACE_VIEW)
    end = timezone.localdate()
    start = end - timedelta(days=days - 1)
    # Aggregates with computed names: typed loosely (django-stubs cannot follow **_SUMS).
    records: Any = UsageRecord.objects.filter(created_at__date__gte=start)
    totals = _clean(records.aggregate(**_SUMS))
    per_day = {
        row["day"]: _clean(row)
        for row in records.annotate(day=TruncDate("created_at")).values("day").annotate(**_SUMS)
    }
    day_rows = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        day_rows.append(per_day.get(day, _clean({"day": day, **dict.fromkeys(_SUMS)})))
    by_model = [
        _clean(r)
        for r in records.values("kind", "model")
        .annotate(**_SUMS)
        .order_by("-cost", "kind", "model")
    ]
    agent_rows = [
        _clean(r)
        for r in records.annotate(
            embedding=Case(
                When(_EMBEDDING, then=Value(True)),
                default=Value(False),
                output_field=BooleanField(),
            )
        )
        .values("agent_id", "embedding")
        .annotate(**_SUMS)
        .order_by("-cost", "embedding")
    ]
    names = dict(
        Agent.objects.filter(pk__in=[r["agent_id"] for r in agent_rows]).values_list("id", "name")
    )
    for row in agent_rows:
        if row["embedding"] and row["agent_id"] is None:
            row["agent"] = "Embeddings (knowledge bases, cache, search)"
            continue
        row["agent"] = names.get(
            row["agent_id"],
            "Direct API calls" if row["agent_id"] is None else f"Deleted agent #{row['agent_id']}",
        )
    return UsageReport(
        start=start,
        end=end,
        totals=totals,
        days=day_rows,
        by_model=by_model,
        by_agent=agent_rows,
        cache_reports=CacheReport.objects.filter(created_at__date__gte=start).count(),
    )


CSV_HEADER = [
    "day",
    "provider",
    "model",
    "agent_id",
    "calls",
    "errors",
    "input_tokens",  # tokens in: uncached + cache reads + cache writes
    "cached_input_tokens",  # of which read from the prompt cache
    "cache_write_tokens",  # of which written to it
    "output_tokens",
    "estimated_rows",  # attempts whose provider did not report every count (estimated)
    "pending_rows",  # attempts sent with no outcome recorded (in progress or interrupted)
    "embedding_calls",
    "cached_answers",
    "saved_usd",
    "cost_usd",
]


def usage_csv_rows(*, access: Access, days: int = 30) -> list[list[Any]]:
    access.require(Perm.WORKSPACE_VIEW)
    start = timezone.localdate() - timedelta(days=days - 1)
    rows: Any = (
        UsageRecord.objects.filter(created_at__date__gte=start)
        .annotate(day=TruncDate("created_at"))
        .values("day", "kind", "model", "agent_id")
        .annotate(**_SUMS)
        .order_by("day", "kind", "model", "agent_id")
    )
    return [
        [
            r["day"].isoformat(),
            r["kind"],
            r["model"],
            r["agent_id"] or "",
            r["calls"],
            r["errors"],
            r["input_tokens"] or 0,
            r["cached_tokens"] or 0,
            r["cache_write_tokens"] or 0,
            r["output_tokens"] or 0,
            r["estimated"],
            r["pending"],
            r["embeddings"],
            r["cached"],
            r["saved"] or Decimal(0),
            r["cost"] or Decimal(0),
        ]
        for r in rows
    ]
