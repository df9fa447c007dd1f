"""The gateway against real providers' failure modes on loopback: a closed port (connection
refused) and the offline provider, with the breaker's state in the real Redis."""

from __future__ import annotations

import socket
from decimal import Decimal
from typing import Any

import pytest
import redis
from django.conf import settings
from django_tenants.utils import schema_context

from agents.gateway.breaker import BreakerPolicy, CircuitBreaker
from agents.gateway.calls import GatewayError, UnknownModel, gateway_complete, gateway_stream
from agents.models import AliasTarget, ModelAlias, ProviderCredential, UsageRecord
from agents.providers.base import ChatRequest, Message, TextDelta
from billing.models import ModelPrice
from tenants.models import Workspace

pytestmark = pytest.mark.django_db

CLOSED_PORT_URL = "http://127.0.0.1:9/v1"  # discard port: nothing listens, connect is refused


def _request(text: str = "Hello there") -> ChatRequest:
    return ChatRequest(model="", messages=(Message(role="user", content=text),))


@pytest.fixture(autouse=True)
def _fresh_breakers() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    for key in client.scan_iter(f"{prefix}:breaker:*"):
        client.delete(key)


def _alias(name: str, *targets: tuple[str, str, ProviderCredential | None]) -> ModelAlias:
    alias = ModelAlias.objects.create(name=name)
    for position, (kind, model, credential) in enumerate(targets):
        AliasTarget.objects.create(
            alias=alias, position=position, kind=kind, model=model, credential=credential
        )
    return alias


@pytest.fixture(autouse=True)
def _model_servers_on_loopback(settings) -> None:
    """The fake and dead model servers live on loopback: a private network to the outbound
    guard, which a self-hoster allows for their own model servers."""
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True


def _dead_server() -> ProviderCredential:
    credential = ProviderCredential(
        name="dead vLLM", kind="openai_compatible", base_url=CLOSED_PORT_URL
    )
    credential.set_api_key("sk-test-unused-1234")
    credential.save()
    return credential


def test_direct_offline_model_answers_and_is_priced_in_the_ledger(
    workspace_a: Workspace,
) -> None:
    ModelPrice.objects.create(
        provider="offline", model="demo", input_per_mtok=Decimal("1"), output_per_mtok=Decimal("2")
    )
    with schema_context(workspace_a.schema_name):
        outcome = gateway_complete(model="offline:demo", request=_request())
        row = UsageRecord.objects.get()
    usage = outcome.result.usage
    expected = (Decimal(usage.input_tokens) * 1 + Decimal(usage.output_tokens) * 2) / 1_000_000
    assert outcome.result.text.startswith("[offline model]")
    assert outcome.cost_usd == expected.quantize(Decimal("0.000001"))
    assert (row.outcome, row.kind, row.model, row.cost_usd) == (
        "ok",
        "offline",
        "demo",
        outcome.cost_usd,
    )
    assert row.input_tokens == usage.input_tokens
    assert row.output_tokens == usage.output_tokens


def test_unreachable_first_target_retries_then_falls_back(workspace_a: Workspace) -> None:
    with schema_context(workspace_a.schema_name):
        _alias("smart", ("openai_compatible", "llama3", _dead_server()), ("offline", "demo", None))
        outcome = gateway_complete(model="smart", request=_request())
        rows = list(
            UsageRecord.objects.order_by("id").values_list("kind", "outcome", "attempt", "fallback")
        )
    assert outcome.fallback is True
    assert outcome.target.kind == "offline"
    assert rows == [
        ("openai_compatible", "error", 1, False),
        ("openai_compatible", "error", 2, False),
        ("openai_compatible", "error", 3, False),
        ("offline", "ok", 1, True),
    ]
    assert all("reach" in a for a in outcome.attempts)


def test_repeated_failures_open_the_breaker_and_later_calls_skip_the_target(
    workspace_a: Workspace, settings
) -> None:
    settings.GATEWAY_BREAKER_THRESHOLD = 3
    with schema_context(workspace_a.schema_name):
        _alias("smart", ("openai_compatible", "llama3", _dead_server()), ("offline", "demo", None))
        gateway_complete(model="smart", request=_request())  # 3 failures: the circuit opens
        UsageRecord.objects.all().delete()

        second = gateway_complete(model="smart", request=_request())
        rows = list(UsageRecord.objects.order_by("id").values_list("kind", "outcome"))
    assert second.target.kind == "offline"
    assert rows == [("openai_compatible", "skipped"), ("offline", "ok")]


def test_breakers_are_per_workspace_credential(
    workspace_a: Workspace, workspace_b: Workspace, settings
) -> None:
    settings.GATEWAY_BREAKER_THRESHOLD = 1
    with schema_context(workspace_a.schema_name):
        _alias("smart", ("openai_compatible", "llama3", _dead_server()), ("offline", "x", None))
        gateway_complete(model="smart", request=_request())
    with schema_context(workspace_b.schema_name):
        _alias("smart", ("openai_compatible", "llama3", _dead_server()), ("offline", "x", None))
        gateway_complete(model="smart", request=_request())
        outcomes = list(UsageRecord.objects.order_by("id").values_list("outcome", flat=True))
    # B's own credential was tried (and failed) although A's circuit for the same URL is open.
    assert outcomes[0] == "error"


def test_every_target_failing_is_one_clear_error(workspace_a: Workspace) -> None:
    with schema_context(workspace_a.schema_name):
        _alias("only-dead", ("openai_compatible", "llama3", _dead_server()))
        with pytest.raises(GatewayError) as excinfo:
            gateway_complete(model="only-dead", request=_request())
    assert "No model could answer for 'only-dead'" in excinfo.value.message
    assert len(excinfo.value.attempts) == 3


@pytest.mark.parametrize("name", ["nonexistent", "gemini:pro", "anthropic:"])
def test_unknown_models_are_named(workspace_a: Workspace, name: str) -> None:
    with schema_context(workspace_a.schema_name), pytest.raises(UnknownModel, match=name):
        gateway_complete(model=name, request=_request())


def test_aliases_belong_to_their_workspace(workspace_a: Workspace, workspace_b: Workspace) -> None:
    with schema_context(workspace_a.schema_name):
        _alias("a-only", ("offline", "demo", None))
    with schema_context(workspace_b.schema_name), pytest.raises(UnknownModel):
        gateway_complete(model="a-only", request=_request())


def test_streaming_falls_back_before_the_first_token(workspace_a: Workspace) -> None:
    seen: list[str] = []
    with schema_context(workspace_a.schema_name):
        _alias("smart", ("openai_compatible", "llama3", _dead_server()), ("offline", "demo", None))
        outcome = gateway_stream(
            model="smart",
            request=_request("stream please"),
            on_event=lambda e: seen.append(e.text) if isinstance(e, TextDelta) else None,
        )
    assert "".join(seen) == outcome.result.text
    assert outcome.fallback is True


def test_provider_keys_are_encrypted_at_rest_and_masked(workspace_a: Workspace) -> None:
    with schema_context(workspace_a.schema_name):
        credential = ProviderCredential(name="prod", kind="anthropic")
        credential.set_api_key("sk-ant-api03-SECRETSECRETSECRET-wxyz")
        credential.save()
        stored = ProviderCredential.objects.get(pk=credential.pk)
    assert "SECRET" not in stored.api_key_encrypted
    assert stored.key_hint == "••••wxyz"
    assert stored.api_key() == "sk-ant-api03-SECRETSECRETSECRET-wxyz"


def test_half_open_breaker_lets_one_trial_through() -> None:
    breaker = CircuitBreaker(
        "test:half-open", BreakerPolicy(threshold=1, window_seconds=60, cooldown_seconds=0)
    )
    assert breaker.record_failure() is True
    # Cooldown 0: the circuit is half-open at once; one caller gets the trial, the next waits.
    assert breaker.allows_call() is True
    assert breaker.allows_call() is False
    breaker.record_success()
    assert breaker.allows_call() is True
    assert not breaker.is_open()


def test_without_redis_the_breaker_lets_calls_through_instead_of_failing_them(
    settings: Any,
) -> None:
    """The broker's Redis restarting must not fail the model steps running meanwhile: seen as
    a workflow run failed in the fault-injection test of a broker restart."""
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    breaker = CircuitBreaker("test:no-redis", BreakerPolicy(threshold=1))
    assert breaker.allows_call() is True
    assert breaker.record_failure() is False  # not counted, and not raised
    breaker.record_success()


def _credential(name: str, kind: str, base_url: str) -> ProviderCredential:
    credential = ProviderCredential(name=name, kind=kind, base_url=base_url)
    credential.set_api_key(f"sk-{name}-0000")
    credential.save()
    return credential


def test_rate_limited_call_waits_for_retry_after_then_succeeds(
    workspace_a: Workspace, fake_openai, settings
) -> None:
    settings.GATEWAY_MAX_RETRY_DELAY_SECONDS = 2.0
    fake_openai.queue_error(429, retry_after=1)
    fake_openai.queue(text="second time lucky")
    with schema_context(workspace_a.schema_name):
        _alias("fast", ("openai", "gpt-x", _credential("oa", "openai", fake_openai.base_url)))
        outcome = gateway_complete(model="fast", request=_request())
        rows = list(UsageRecord.objects.order_by("id").values_list("outcome", "retry_delay_ms"))
    assert outcome.result.text == "second time lucky"
    assert rows[0][0] == "error"
    assert rows[0][1] >= 1000  # waited at least Retry-After
    assert rows[1] == ("ok", 0)
    assert len(fake_openai.requests) == 2


def test_retry_after_longer_than_we_wait_falls_back_at_once(
    workspace_a: Workspace, fake_anthropic, fake_openai
) -> None:
    fake_anthropic.queue_error(429, retry_after=120)
    fake_openai.queue(text="from the fallback")
    with schema_context(workspace_a.schema_name):
        _alias(
            "smart",
            ("anthropic", "claude-x", _credential("an", "anthropic", fake_anthropic.base_url)),
            ("openai", "gpt-x", _credential("oa", "openai", fake_openai.base_url)),
        )
        outcome = gateway_complete(model="smart", request=_request())
    assert outcome.result.text == "from the fallback"
    assert outcome.fallback
    assert len(fake_anthropic.requests) == 1  # no pointless retries into a 2-minute wait


def test_open_circuit_sends_nothing_to_the_failing_provider(
    workspace_a: Workspace, fake_anthropic, fake_openai, settings
) -> None:
    settings.GATEWAY_BREAKER_THRESHOLD = 2
    for _ in range(2):
        fake_anthropic.queue_error(500)
    with schema_context(workspace_a.schema_name):
        _alias(
            "smart",
            ("anthropic", "claude-x", _credential("an", "anthropic", fake_anthropic.base_url)),
            ("openai", "gpt-x", _credential("oa", "openai", fake_openai.base_url)),
        )
        gateway_complete(model="smart", request=_request())
        requests_while_closed = len(fake_anthropic.requests)
        gateway_complete(model="smart", request=_request())
    assert requests_while_closed == 2
    assert len(fake_anthropic.requests) == 2  # the second call skipped Anthropic entirely
    assert len(fake_openai.requests) == 2


def test_a_bad_request_is_not_retried_or_sent_elsewhere(
    workspace_a: Workspace, fake_anthropic, fake_openai
) -> None:
    fake_anthropic.queue_error(400, message="messages: roles must alternate")
    with schema_context(workspace_a.schema_name):
        _alias(
            "smart",
            ("anthropic", "claude-x", _credential("an", "anthropic", fake_anthropic.base_url)),
            ("openai", "gpt-x", _credential("oa", "openai", fake_openai.base_url)),
        )
        with pytest.raises(GatewayError, match="roles must alternate"):
            gateway_complete(model="smart", request=_request())
    assert len(fake_openai.requests) == 0


def test_the_workspace_key_is_decrypted_and_sent(workspace_a: Workspace, fake_anthropic) -> None:
    with schema_context(workspace_a.schema_name):
        _alias(
            "c",
            ("anthropic", "claude-x", _credential("mine", "anthropic", fake_anthropic.base_url)),
        )
        gateway_complete(model="c", request=_request())
    assert fake_anthropic.last_request.api_key == "sk-mine-0000"
    assert fake_anthropic.last_request.body["model"] == "claude-x"
