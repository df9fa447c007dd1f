"""The semantic response cache: answers of an agent version, found again for near-duplicate
prompts by the cosine distance of their embeddings (pgvector).

Keyed by workspace (it lives in the workspace's schema), agent version and model, so a new
version starts cold; a knowledge base change drops the entries of the versions that read it.
Answers that used a tool whose output changes with time or the outside world (current time,
HTTP) are not stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, QuerySet, Value, When
from django.utils import timezone
from pgvector.django import CosineDistance

from agents.embeddings import embed_one
from agents.models import AgentVersion, CachedResponse, UsageRecord
from agents.providers.base import Message

CACHEABLE_TOOLS = frozenset({"calculator", "knowledge_search"})


@dataclass(frozen=True)
class CacheHit:
    entry: CachedResponse
    distance: float


def prompt_text(messages: list[Message]) -> str:
    """The cache key's prompt: every message, so memory is part of the key."""
    return "\n".join(f"{m.role}: {m.content}" for m in messages)


def _sha(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()


def _fresh() -> QuerySet[CachedResponse]:
    cutoff = timezone.now() - timedelta(days=settings.RESPONSE_CACHE_TTL_DAYS)
    return CachedResponse.objects.filter(created_at__gte=cutoff)


def lookup(version: AgentVersion, prompt: str) -> CacheHit | None:
    """The cached answer for this prompt or a near-duplicate, if any; counts the hit and
    writes a `cached` ledger row with the money it saved.

    One read (the nearest entry; among equally near ones, the exact prompt) and one
    transaction for the two writes: on the hit path every round trip and WAL flush shows."""
    sha = _sha(prompt)
    nearest = (
        _fresh()
        .filter(version=version, model=version.model)
        .defer("embedding", "prompt")
        .annotate(
            distance=CosineDistance("embedding", embed_one(prompt)),
            exact=Case(When(prompt_sha256=sha, then=Value(0)), default=Value(1)),
        )
        .order_by("distance", "exact")
        .first()
    )
    if nearest is None:
        return None
    exact = nearest.prompt_sha256 == sha
    if not exact and nearest.distance > settings.RESPONSE_CACHE_MAX_DISTANCE:
        return None
    now = timezone.now()
    with transaction.atomic():
        CachedResponse.objects.filter(pk=nearest.pk).update(hits=F("hits") + 1, last_hit_at=now)
        UsageRecord.objects.create(
            agent_id=version.agent_id,
            alias=version.model if ":" not in version.model else "",
            kind="cache",
            model=version.model,
            outcome=UsageRecord.Outcome.CACHED,
            saved_usd=nearest.cost_usd,
        )
    return CacheHit(entry=nearest, distance=0.0 if exact else float(nearest.distance))


def store(
    version: AgentVersion,
    prompt: str,
    *,
    answer: str,
    tool_steps: list[dict[str, object]],
    cost_usd: Decimal,
    input_tokens: int,
    output_tokens: int,
) -> CachedResponse | None:
    if any(step["tool"] not in CACHEABLE_TOOLS for step in tool_steps):
        return None
    return CachedResponse.objects.create(
        version=version,
        model=version.model,
        prompt=prompt,
        prompt_sha256=_sha(prompt),
        embedding=embed_one(prompt),
        answer=answer,
        tool_steps=tool_steps,
        cost_usd=cost_usd,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


def invalidate_agent(agent_id: int) -> int:
    """Drop every cached answer of the agent (a new version was saved)."""
    deleted, _ = CachedResponse.objects.filter(version__agent_id=agent_id).delete()
    return deleted


def invalidate_knowledge_base(knowledge_base_id: int) -> int:
    """Drop the cached answers of every version that reads this knowledge base."""
    deleted, _ = CachedResponse.objects.filter(
        version__knowledge_base_ids__contains=[knowledge_base_id]
    ).delete()
    return deleted
