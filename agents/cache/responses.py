"""The response cache: an agent version's answers, served again without a model call.

Two tiers (docs/gateway.md has their measured accuracy):

- **Exact** (on by default): the entry's key is a SHA-256 of everything that changes the
  answer: the model, the agent version (its prompt, tools, temperature, output schema), the
  contents version of every knowledge base the version reads, the conversation before the
  question, the asker when the version caches per user, and the question's normal form
  (`cache_guard.normalise`). The workspace is the schema the entry lives in. Equal keys ask
  the same question in the same context, so this tier never serves a different question.
- **Semantic** (opt-in per version): among entries with the same context key (everything but
  the question) and the same embedder, the nearest few within the embedder's calibrated
  distance (`cache_calibration`); the first that passes the near-miss guard
  (`cache_guard.near_miss`) and, when the version asks for it, the model's check, is served.

Never stored: failed, refused or cut-off answers, and answers that used a tool outside
`CACHEABLE_TOOLS` (side effects or time: `http_request`, `current_time`). Every hit writes a
`cached` ledger row with what it saved; a model check writes its own priced row
(`purpose=cache_check`), so savings are reported net of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from pgvector.django import CosineDistance

from agents.cache import calibration as cache_calibration
from agents.cache import guard as cache_guard
from agents.embeddings import get_embedder
from agents.gateway.calls import GatewayError, UsageContext, gateway_complete
from agents.models import (
    AgentRun,
    AgentVersion,
    CachedResponse,
    CacheReport,
    ConversationTurn,
    KnowledgeBase,
    UsageRecord,
)
from agents.providers.base import ChatRequest, Message, StopReason
from core import metrics
from core.exceptions import Conflict, NotFound
from tenants.permissions import Access, Perm

logger = logging.getLogger(__name__)

CACHEABLE_TOOLS = frozenset({"calculator", "knowledge_search"})
SEMANTIC_CANDIDATES = 5  # nearest entries the guard looks at, nearest first
_SERVABLE_STOPS = frozenset({StopReason.END_TURN, StopReason.STOP_SEQUENCE})


@dataclass(frozen=True)
class CacheKey:
    question: str  # as asked: the guard reads case (names) and punctuation
    context_sha256: str
    key_sha256: str
    user_id: int | None


@dataclass(frozen=True)
class CacheHit:
    entry: CachedResponse
    tier: str  # CacheReport.Tier


def _sha(value: Any) -> str:
    return hashlib.sha256(
        json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def prompt_text(messages: list[Message]) -> str:
    """The whole prompt, as people reading the cache see it."""
    return "\n".join(f"{m.role}: {m.content}" for m in messages)


def cache_key(version: AgentVersion, messages: list[Message], *, user_id: int | None) -> CacheKey:
    """One read (the knowledge bases' contents versions, when the version reads any)."""
    question = messages[-1].content if messages else ""
    knowledge = sorted(
        KnowledgeBase.objects.filter(pk__in=version.knowledge_base_ids).values_list(
            "pk", "contents_version"
        )
        if version.knowledge_base_ids
        else []
    )
    asker = user_id if version.cache_per_user else None
    context = {
        "model": version.model,
        "version": version.pk,
        "system": version.system_prompt,
        "tools": sorted(version.tools),
        "temperature": version.temperature,
        "max_tokens": version.max_tokens,
        "schema": version.output_schema,
        "knowledge": knowledge,
        "before": [[m.role, m.content] for m in messages[:-1]],
        "user": asker,
    }
    context_sha = _sha(context)
    return CacheKey(
        question=question,
        context_sha256=context_sha,
        key_sha256=_sha([context_sha, cache_guard.normalise(question)]),
        user_id=asker,
    )


def _fresh() -> QuerySet[CachedResponse]:
    cutoff = timezone.now() - timedelta(days=settings.RESPONSE_CACHE_TTL_DAYS)
    return CachedResponse.objects.filter(created_at__gte=cutoff)


def _exact(key: CacheKey) -> CachedResponse | None:
    return _fresh().filter(key_sha256=key.key_sha256).defer("embedding").first()


def _semantic_candidates(
    key: CacheKey, embedder: str, vector: list[float], limit: float
) -> list[CachedResponse]:
    return list(
        _fresh()
        .filter(context_sha256=key.context_sha256, embedder=embedder)
        .defer("embedding")
        .annotate(distance=CosineDistance("embedding", vector))
        .filter(distance__lte=limit)
        .order_by("distance")[:SEMANTIC_CANDIDATES]
    )


def _model_says_same(
    version: AgentVersion, question: str, entry: CachedResponse, context: UsageContext
) -> bool:
    """Ask the agent's model whether the cached answer answers the new question. Its cost
    is booked (`purpose=cache_check`); any failure counts as "no"."""
    request = ChatRequest(
        model=version.model,
        system=(
            "You check a response cache. Reply with exactly one word: YES if the cached "
            "answer fully and correctly answers the new question, otherwise NO."
        ),
        messages=(
            Message(
                role="user",
                content=f"New question: {question}\n\nThe cached answer was written for: "
                f"{entry.question}\n\nCached answer:\n{entry.answer}",
            ),
        ),
        temperature=0,
        max_tokens=3,
    )
    check = replace(context, purpose=UsageRecord.Purpose.CACHE_CHECK)
    try:
        result = gateway_complete(model=version.model, request=request, context=check)
    except GatewayError as exc:
        logger.info("cache check failed, treated as a miss: %s", exc.message)
        return False
    return result.result.text.strip().upper().startswith("YES")


def lookup(version: AgentVersion, key: CacheKey, *, context: UsageContext) -> CacheHit | None:
    """The cached answer for this question in this context, if any; counts the hit and
    writes a `cached` ledger row with the money it saved."""
    hit: CacheHit | None = None
    entry = _exact(key)
    if entry is not None:
        hit = CacheHit(entry=entry, tier=CacheReport.Tier.EXACT)
    elif version.cache_semantic:
        hit = _semantic(version, key, context)
    metrics.cache_lookup(result="miss" if hit is None else f"hit_{hit.tier}")
    if hit is None:
        return None
    purpose = (
        UsageRecord.Purpose.CACHE_EXACT
        if hit.tier == CacheReport.Tier.EXACT
        else UsageRecord.Purpose.CACHE_SEMANTIC
    )
    with transaction.atomic():
        CachedResponse.objects.filter(pk=hit.entry.pk).update(
            hits=F("hits") + 1, last_hit_at=timezone.now()
        )
        UsageRecord.objects.create(
            agent_id=version.agent_id,
            run_id=context.run_id,
            alias=version.model if ":" not in version.model else "",
            kind="cache",
            model=version.model,
            outcome=UsageRecord.Outcome.CACHED,
            saved_usd=hit.entry.cost_usd,
            purpose=purpose,
        )
    return hit


def _semantic(version: AgentVersion, key: CacheKey, context: UsageContext) -> CacheHit | None:
    embedder = get_embedder()
    limit = cache_calibration.max_distance(embedder.name)
    if limit is None:
        return None
    vector = embedder.embed([cache_guard.normalise(key.question)])[0]
    for candidate in _semantic_candidates(key, embedder.name, vector, limit):
        if cache_guard.near_miss(candidate.question, key.question) is not None:
            continue
        if version.cache_verify and not _model_says_same(version, key.question, candidate, context):
            continue
        return CacheHit(entry=candidate, tier=CacheReport.Tier.SEMANTIC)
    return None


def cacheable(
    *, ok: bool, text: str, stop_reason: StopReason | None, tool_steps: list[Any]
) -> bool:
    """Whether an answer may be served again: a complete, accepted answer that used no tool
    with side effects or time-dependent output."""
    return (
        ok
        and bool(text.strip())
        and stop_reason in _SERVABLE_STOPS
        and all(step["tool"] in CACHEABLE_TOOLS for step in tool_steps)
    )


def store(
    version: AgentVersion,
    key: CacheKey,
    messages: list[Message],
    *,
    answer: str,
    tool_steps: list[dict[str, Any]],
    cost_usd: Decimal,
    input_tokens: int,
    output_tokens: int,
) -> CachedResponse:
    """Call only for an answer `cacheable` accepted, with the key its lookup used (the
    knowledge it answered from is the one that key names)."""
    embedder = get_embedder()
    return CachedResponse.objects.create(
        version=version,
        model=version.model,
        prompt=prompt_text(messages),
        question=key.question,
        key_sha256=key.key_sha256,
        context_sha256=key.context_sha256,
        user_id=key.user_id,
        embedder=embedder.name,
        embedding=embedder.embed([cache_guard.normalise(key.question)])[0],
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


def knowledge_base_changed(knowledge_base_id: int) -> int:
    """A knowledge base's documents changed: its contents version goes up (so no key made
    before matches again) and the entries of the versions that read it are dropped."""
    KnowledgeBase.objects.filter(pk=knowledge_base_id).update(
        contents_version=F("contents_version") + 1
    )
    deleted, _ = CachedResponse.objects.filter(
        version__knowledge_base_ids__contains=[knowledge_base_id]
    ).delete()
    return deleted


def answer_report(
    *,
    access: Access,
    answered: AgentRun | ConversationTurn,
    question: str,
    agent_id: int,
    run_id: int | None = None,
    turn_id: int | None = None,
) -> CacheReport:
    """Record that a cached answer (of a run or a chat turn, locked by the caller) was wrong and
    evict its entry. Call inside the caller's transaction."""
    if not answered.cache_hit:
        raise Conflict("This answer did not come from the cache.")
    if answered.cache_reported_at is not None:
        raise Conflict("This cached answer was already reported as wrong.")
    entry = (
        CachedResponse.objects.select_for_update()
        .filter(pk=answered.cache_entry_id)
        .defer("embedding")
        .first()
        if answered.cache_entry_id
        else None
    )
    tier = ""
    if entry is not None:
        tier = (
            CacheReport.Tier.EXACT
            if cache_guard.normalise(entry.question) == cache_guard.normalise(question)
            else CacheReport.Tier.SEMANTIC
        )
    report = CacheReport.objects.create(
        agent_id=agent_id,
        version_id=answered.version_id,
        tier=tier,
        question=question,
        cached_question=entry.question if entry else "",
        answer=(entry.answer if entry else "")[:4000],
        run_id=run_id,
        turn_id=turn_id,
        reported_by_id=access.user.pk if access.user else None,
    )
    if entry is not None:
        entry.delete()
    answered.cache_reported_at = report.created_at
    answered.save(update_fields=["cache_reported_at"])
    return report


@transaction.atomic
def run_cache_report(*, access: Access, agent_id: int, run_id: int) -> AgentRun:
    """Someone says the cached answer of this run is wrong: the entry is evicted and the
    report counted. Returns the run, marked as reported."""
    access.require(Perm.RUN)
    run = (
        AgentRun.objects.select_for_update(of=("self",))
        .select_related("version", "agent")
        .filter(pk=run_id, agent_id=agent_id)
        .first()
    )
    if run is None:
        raise NotFound("No run with that id in this workspace.")
    answer_report(
        access=access, answered=run, question=run.input, agent_id=run.agent_id, run_id=run.pk
    )
    return run
