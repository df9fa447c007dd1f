"""The provider gateway: model aliases → ordered targets, retries with backoff on transient
failures, a shared circuit breaker per target, fallback to the next target, and a priced
ledger row for every attempt.

    result = gateway_complete(model="smart", request=ChatRequest(...))

Must run in the workspace's schema (aliases, credentials and the ledger are workspace data).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from opentelemetry.trace import SpanKind

from agents.gateway import budgets, config_cache, replay, spend
from agents.gateway.breaker import CircuitBreaker
from agents.gateway.tokens import estimate_request_tokens, estimate_text_tokens
from agents.models import AliasTarget, ModelAlias, ProviderKind, UsageRecord
from agents.providers.base import (
    ChatRequest,
    ChatResult,
    ProviderConfig,
    ProviderError,
    StreamDone,
    StreamEvent,
    TextDelta,
    ToolCallReady,
    Usage,
)
from agents.providers.registry import get_provider
from billing import meter, quotas
from billing.pricing import usage_cost
from core import metrics, tracing
from core.exceptions import ApplicationError
from tenants.schemas import current_schema

NO_USAGE = Usage()


class GatewayError(ApplicationError):
    """No target could answer. `attempts` says what was tried, in order; `usage` and
    `cost_usd` are what the failed attempts used (their ledger rows' sum), so a failed run or
    chat turn shows what it cost."""

    code = "llm_unavailable"
    status = 502

    def __init__(
        self,
        message: str,
        *,
        attempts: list[str] | None = None,
        usage: Usage | None = None,
        cost_usd: Decimal = Decimal(0),
    ) -> None:
        super().__init__(message)
        self.attempts = attempts or []
        self.usage = usage or Usage()
        self.cost_usd = cost_usd


def spent_before_failing(exc: Exception) -> tuple[Usage, Decimal]:
    """What a failed call used and cost: a GatewayError's attempts, or what was spent before a
    budget refused the next call; nothing for the other refusals (an unknown model refuses
    before anything is sent)."""
    if isinstance(exc, GatewayError | budgets.BudgetExceeded):
        return exc.usage, exc.cost_usd
    return Usage(), Decimal(0)


class UnknownModel(ApplicationError):
    code = "unknown_model"
    status = 400


@dataclass(frozen=True)
class UsageContext:
    """What the ledger rows of a call belong to."""

    agent_id: int | None = None
    run_id: int | None = None
    run_cap_usd: Decimal | None = None  # the run's cost cap, checked before each call
    run_spent_usd: Decimal = Decimal(0)  # what the run has spent before this call
    user_id: int | None = None  # who asked (the response cache keys per-user answers by it)
    purpose: str = ""  # UsageRecord.Purpose: why the call was made, when not to answer


NO_CONTEXT = UsageContext()


@dataclass(frozen=True)
class Target:
    kind: str
    model: str
    config: ProviderConfig
    breaker_key: str

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.model}"


@dataclass
class GatewayResult:
    result: ChatResult
    target: Target
    cost_usd: Decimal
    fallback: bool
    attempts: list[str] = field(default_factory=list)


def _platform_target(kind: str, model: str) -> Target:
    config = ProviderConfig(
        kind=kind,
        api_key=settings.LLM_PLATFORM_KEYS.get(kind, ""),
        base_url=settings.LLM_PLATFORM_BASE_URLS.get(kind),
        timeout=settings.GATEWAY_TIMEOUT_SECONDS,
    )
    return Target(kind=kind, model=model, config=config, breaker_key=f"platform:{kind}:{model}")


def _alias_target(target: AliasTarget) -> Target:
    credential = target.credential
    if credential is None:
        return _platform_target(target.kind, target.model)
    config = ProviderConfig(
        kind=credential.kind,
        api_key=credential.api_key(),
        base_url=credential.base_url or None,
        timeout=settings.GATEWAY_TIMEOUT_SECONDS,
    )
    # Workspace credentials fail on their own (a revoked key, a quota): their own breaker.
    key = f"{current_schema()}:{credential.pk}:{target.model}"
    return Target(kind=credential.kind, model=target.model, config=config, breaker_key=key)


def resolve_targets(name: str) -> list[Target]:
    """An alias of this workspace, or `kind:model` (e.g. `offline:demo`) with platform keys.
    Cached per process until the workspace's aliases or credentials change."""
    return config_cache.cached(("targets", name), lambda: _load_targets(name))


def _load_targets(name: str) -> list[Target]:
    alias = ModelAlias.objects.filter(name=name).prefetch_related("targets__credential").first()
    if alias is not None:
        targets = [_alias_target(t) for t in alias.targets.all()]
        if not targets:
            raise UnknownModel(f"The model alias '{name}' has no targets yet.")
        return targets
    kind, _, model = name.partition(":")
    if kind in ProviderKind.values and model:
        return [_platform_target(kind, model)]
    raise UnknownModel(
        f"Unknown model '{name}': use a model alias of this workspace or 'provider:model'."
    )


def _price(target: Target, usage: Usage) -> Decimal:
    price = config_cache.price_for(target.kind, target.model)
    return usage_cost(usage, price) if price is not None else Decimal(0)


def _retry_delay(attempt: int, error: ProviderError) -> float | None:
    """Seconds to wait before attempt `attempt + 1` on the same target, or None to move on."""
    if not error.retryable or attempt >= settings.GATEWAY_MAX_ATTEMPTS:
        return None
    backoff = settings.GATEWAY_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)
    backoff += random.uniform(0, settings.GATEWAY_BACKOFF_BASE_SECONDS)  # noqa: S311 (jitter)
    delay = max(backoff, error.retry_after or 0)
    return delay if delay <= settings.GATEWAY_MAX_RETRY_DELAY_SECONDS else None


def _skipped(target: Target, *, context: UsageContext, alias: str, fallback: bool) -> None:
    UsageRecord.objects.create(
        agent_id=context.agent_id,
        run_id=context.run_id,
        alias=alias,
        kind=target.kind,
        model=target.model,
        outcome=UsageRecord.Outcome.SKIPPED,
        attempt=0,
        fallback=fallback,
        error="circuit open",
        purpose=context.purpose,
    )
    metrics.model_call(
        provider=target.kind, model=_model_label(target.kind, target.model), outcome="skipped"
    )


def _open_attempt(
    target: Target, *, context: UsageContext, alias: str, attempt: int, fallback: bool
) -> UsageRecord:
    """The attempt's ledger row, written (and committed, outside a transaction) before the
    request is sent. A worker killed while waiting for the answer leaves it `pending`: the
    provider may have charged for a call whose outcome nobody recorded, and a redelivered task
    that pays again shows as a second row beside it."""
    row = UsageRecord.objects.create(
        agent_id=context.agent_id,
        run_id=context.run_id,
        alias=alias,
        kind=target.kind,
        model=target.model,
        outcome=UsageRecord.Outcome.PENDING,
        attempt=attempt,
        fallback=fallback,
        purpose=context.purpose,
    )
    return row


def _close_attempt(
    row: UsageRecord,
    *,
    outcome: str,
    usage: Usage = NO_USAGE,
    cost: Decimal = Decimal(0),
    latency_ms: int = 0,
    error: str = "",
    retry_delay: float | None = None,
) -> None:
    """Record the attempt's outcome and cost; a billable cost gets its meter outbox row in
    the same transaction (billing.meter)."""
    metered = config_cache.metered(config_cache.billing_view()) if cost > 0 else None
    with transaction.atomic() if metered else contextlib.nullcontext():
        UsageRecord.objects.filter(pk=row.pk).update(
            outcome=outcome,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            estimated=usage.estimated,
            cost_usd=cost,
            latency_ms=latency_ms,
            error=error[:300],
            retry_delay_ms=int((retry_delay or 0) * 1000),
        )
        meter.ledger_cost_recorded(
            schema_name=current_schema(),
            ledger_id=row.pk,
            cost_usd=cost,
            occurred_at=lambda: row.created_at,
            metered=metered,
        )
        spend.spend_added(cost)
    metrics.model_call(
        provider=row.kind,
        model=_model_label(row.kind, row.model),
        outcome="ok" if outcome == UsageRecord.Outcome.OK else "error",
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cost_usd=cost,
        seconds=latency_ms / 1000,
    )


def _model_label(kind: str, model: str) -> str:
    """The model as a metric label: a name in the platform's price table, else `other` (an
    offline model or an alias target's name can be anything: core/metrics.py, bounded labels)."""
    if config_cache.price_for(kind, model) is None:
        return metrics.UNPRICED_MODEL
    return model


def _traced_call(
    call: Callable[[Target], ChatResult], target: Target, request: ChatRequest, attempt: int
) -> ChatResult:
    """One attempt in a span named as the GenAI semantic conventions name it ("chat <model>"),
    with their attributes; the prompt and answer only when OTEL_RECORD_CONTENT is on."""
    attributes: dict[str, str | int] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": target.kind,
        "gen_ai.system": target.kind,
        "gen_ai.request.model": target.model,
        "agentmarket.gateway.attempt": attempt,
    }
    with tracing.span(f"chat {target.model}", kind=SpanKind.CLIENT, attributes=attributes) as span:
        recording = span.is_recording()
        if recording and tracing.record_content():
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            if request.system:
                span.set_attribute("gen_ai.system_instructions", request.system)
            span.set_attribute("gen_ai.input.messages", tracing.content(messages))
        try:
            result = call(target)
        except ProviderError as exc:
            if recording:
                span.set_attribute("error.type", type(exc).__name__)
                tracing.failed(span, exc.message)
            raise
        if recording:
            usage = billed_usage(request, result.usage, output=_output_of(result))
            span.set_attributes(
                {
                    "gen_ai.response.model": result.model or target.model,
                    "gen_ai.usage.input_tokens": usage.input_tokens,
                    "gen_ai.usage.output_tokens": usage.output_tokens,
                    tracing.COST: float(_price(target, usage)),
                }
            )
            if result.stop_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [result.stop_reason])
            if tracing.record_content():
                span.set_attribute(
                    "gen_ai.output.messages",
                    tracing.content([{"role": "assistant", "content": result.text}]),
                )
        return result


def _after_priced_call() -> None:
    """Mail owners and admins when spend crossed the monthly budget's or the plan's marks."""
    budgets.warn_if_near_cap()
    quotas.ai_spend_warn(config_cache.billing_view(), spend_since=spend.spend_since)


def billed_usage(request: ChatRequest, usage: Usage | None, *, output: str) -> Usage:
    """What one attempt used, for the ledger: the provider's own counts, and a local estimate
    (`agents/gateway/tokens.py`, row marked `estimated`) of what it did not report. `usage` None:
    the provider never began answering, nothing was used. `output`: the text and tool-argument
    text that came back."""
    if usage is None:
        return NO_USAGE
    estimated = usage.estimated
    if usage.tokens_in == 0:
        usage = replace(usage, input_tokens=estimate_request_tokens(request))
        estimated = True
    if usage.output_tokens == 0 and output:
        usage = replace(usage, output_tokens=estimate_text_tokens(output))
        estimated = True
    return replace(usage, estimated=estimated)


def _output_of(result: ChatResult) -> str:
    return result.text + "".join(f"{c.name}{c.arguments}" for c in result.tool_calls)


class StreamBrokeOff(ProviderError):
    """A streamed answer failed after its first token reached the caller. The attempt is
    recorded and counts against the target's breaker like any failure, but it is neither
    retried nor sent to another target: the user already saw part of this answer, and a
    second answer appended to it (or replacing it) would be paid twice and read as one."""

    def __init__(self, cause: ProviderError) -> None:
        super().__init__(
            cause.message,
            retryable=False,
            status=cause.status,
            usage=cause.usage,
            received=cause.received,
        )


def _run(
    model: str,
    call: Callable[[Target], ChatResult],
    context: UsageContext,
    request: ChatRequest,
    *,
    recorder: replay.CallRecorder | None = None,
    fingerprint: str = "",
) -> GatewayResult:
    with config_cache.one_read():  # one look at the config counters for the whole call
        return _call_targets(model, call, context, request, recorder, fingerprint)


def _call_targets(
    model: str,
    call: Callable[[Target], ChatResult],
    context: UsageContext,
    request: ChatRequest,
    recorder: replay.CallRecorder | None,
    fingerprint: str,
) -> GatewayResult:
    targets = resolve_targets(model)
    alias = model if ":" not in model else ""
    attempts: list[str] = []
    # What the failed attempts used: part of this call's usage and cost, like their rows.
    spent, spent_cost = NO_USAGE, Decimal(0)
    for index, target in enumerate(targets):
        breaker = CircuitBreaker(target.breaker_key)
        if not breaker.allows_call():
            _skipped(target, context=context, alias=alias, fallback=index > 0)
            attempts.append(f"{target.label}: skipped (circuit open)")
            continue
        attempt = 0
        while True:
            attempt += 1
            try:
                budgets.check_before_call(
                    kind=target.kind,
                    model=target.model,
                    request=request,
                    run_cap=context.run_cap_usd,
                    run_spent=context.run_spent_usd + spent_cost,
                )
            except budgets.BudgetExceeded as exc:  # the failed attempts before it stay on it
                exc.usage, exc.cost_usd = spent, spent_cost
                raise
            opened = _open_attempt(
                target, context=context, alias=alias, attempt=attempt, fallback=index > 0
            )
            started = time.perf_counter()
            try:
                result = _traced_call(call, target, request, attempt)
            except ProviderError as exc:
                latency = int((time.perf_counter() - started) * 1000)
                if breaker.record_failure():
                    metrics.breaker_opened(provider=target.kind)
                delay = _retry_delay(attempt, exc)
                usage = billed_usage(request, exc.usage, output=exc.received)
                cost = _price(target, usage)
                _close_attempt(
                    opened,
                    outcome=UsageRecord.Outcome.ERROR,
                    usage=usage,
                    cost=cost,
                    latency_ms=latency,
                    error=exc.message,
                    retry_delay=delay,
                )
                if cost:
                    _after_priced_call()
                spent, spent_cost = spent + usage, spent_cost + cost
                attempts.append(f"{target.label} attempt {attempt}: {exc.message}")
                if isinstance(exc, StreamBrokeOff):
                    raise GatewayError(
                        f"The answer stopped part-way: {exc.message}",
                        attempts=attempts,
                        usage=spent,
                        cost_usd=spent_cost,
                    ) from exc
                if exc.status == 400:  # our request is wrong: no other target will like it
                    raise GatewayError(
                        exc.message, attempts=attempts, usage=spent, cost_usd=spent_cost
                    ) from exc
                if delay is None or not breaker.allows_call():
                    break
                time.sleep(delay)
                continue
            except Exception as exc:  # not the provider's failure: ours, or a time limit
                _close_attempt(
                    opened,
                    outcome=UsageRecord.Outcome.ERROR,
                    latency_ms=int((time.perf_counter() - started) * 1000),
                    error=f"Interrupted on our side ({type(exc).__name__}); cost unknown.",
                )
                raise
            latency = int((time.perf_counter() - started) * 1000)
            breaker.record_success()
            usage = billed_usage(request, result.usage, output=_output_of(result))
            cost = _price(target, usage)
            # The call's usage and cost include its failed attempts (their rows are apart).
            result = replace(result, usage=usage + spent)
            # A recorded call and its ledger row exist together (or neither does).
            with transaction.atomic() if recorder is not None else contextlib.nullcontext():
                _close_attempt(
                    opened,
                    outcome=UsageRecord.Outcome.OK,
                    usage=usage,
                    cost=cost,
                    latency_ms=latency,
                )
                cost += spent_cost
                if recorder is not None:
                    recorder.record(
                        replay.LLM,
                        fingerprint,
                        {"result": replay.result_to_json(result), "kind": target.kind},
                        cost,
                    )
            if cost:
                _after_priced_call()
            return GatewayResult(
                result=result, target=target, cost_usd=cost, fallback=index > 0, attempts=attempts
            )
    raise GatewayError(
        f"No model could answer for '{model}': " + "; ".join(attempts),
        attempts=attempts,
        usage=spent,
        cost_usd=spent_cost,
    )


def _replayed(model: str, request: ChatRequest) -> tuple[GatewayResult | None, str]:
    """Inside a workflow step (`agents.gateway.replay.recording`): the recorded answer of this call
    if the step already made it (a redelivered attempt), else None and the request's fingerprint.
    A replayed call is not made again, not paid again and writes no ledger row."""
    recorder = replay.current()
    if recorder is None:
        return None, ""
    fingerprint = replay.request_fingerprint(model, request)
    recorded = recorder.replay(replay.LLM, fingerprint)
    if recorded is None:
        return None, fingerprint
    result = replay.result_from_json(recorded["result"])
    config = ProviderConfig(kind=recorded["kind"], api_key="", base_url=None, timeout=0)
    target = Target(kind=recorded["kind"], model=result.model, config=config, breaker_key="")
    cost = Decimal(str(recorded.get("cost_usd", "0")))
    return GatewayResult(result=result, target=target, cost_usd=cost, fallback=False), fingerprint


def gateway_complete(
    *, model: str, request: ChatRequest, context: UsageContext = NO_CONTEXT
) -> GatewayResult:
    done, fingerprint = _replayed(model, request)
    if done is not None:
        return done

    def call(target: Target) -> ChatResult:
        provider = get_provider(target.config)
        return provider.complete(_with_model(request, target.model))

    return _run(model, call, context, request, recorder=replay.current(), fingerprint=fingerprint)


def gateway_stream(
    *,
    model: str,
    request: ChatRequest,
    on_event: Callable[[StreamEvent], None],
    context: UsageContext = NO_CONTEXT,
) -> GatewayResult:
    """Stream through the gateway. A target may be retried or replaced only until its first
    token reached `on_event`; after that a failure is final (`StreamBrokeOff`: the user saw a
    partial answer), still recorded in the ledger with what it used and counted by the
    breaker."""

    done, fingerprint = _replayed(model, request)
    if done is not None:
        if done.result.text:
            on_event(TextDelta(done.result.text))
        for tool_call in done.result.tool_calls:
            on_event(ToolCallReady(tool_call))
        return done

    def call(target: Target) -> ChatResult:
        provider = get_provider(target.config)
        emitted = False
        events: Iterator[StreamEvent] = provider.stream(_with_model(request, target.model))
        try:
            for event in events:
                if isinstance(event, StreamDone):
                    return event.result
                if isinstance(event, TextDelta | ToolCallReady):
                    emitted = True
                on_event(event)
        except ProviderError as exc:
            if emitted:
                raise StreamBrokeOff(exc) from exc
            raise
        error = ProviderError("The stream ended without a final message.", retryable=True)
        raise StreamBrokeOff(error) if emitted else error

    return _run(model, call, context, request, recorder=replay.current(), fingerprint=fingerprint)


def _with_model(request: ChatRequest, model: str) -> ChatRequest:
    return replace(request, model=model)
