"""The one outbound guard (`agents.outbound.guard`) and the connections that go through it: webhook
deliveries, provider clients with a workspace's base URL, the http_request tool.

The network edge is faked in the `edge` fixture only: name lookups (`socket.getaddrinfo`) are
answered from a script, and `socket.create_connection` refuses (and records) anything but the
loopback servers of these tests, so no packet leaves the machine even when a guard fails.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
from django_tenants.utils import schema_context

from agents.models import WebhookDelivery
from agents.outbound.guard import check_public_url, guarded_client, refusal_in
from agents.providers.base import ChatRequest, Message, ProviderConfig, ProviderError
from agents.providers.registry import get_provider
from agents.tools.base import ToolFailed
from agents.tools.http import resolve_public
from agents.webhooks import webhook_attempt
from core.exceptions import ValidationFailed
from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.fakes.redirector import Redirector
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.helpers.personas import World


@dataclass
class Edge:
    answers: dict[str, list[str]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)
    connects: list[str] = field(default_factory=list)


@pytest.fixture
def edge(monkeypatch: pytest.MonkeyPatch) -> Edge:
    """`edge.answers[name]`: one answer per lookup of `name` (the last one repeats). A
    connection to a name resolves it through the same script, like the real one."""
    scripted = Edge()
    real_getaddrinfo = socket.getaddrinfo
    real_create_connection = socket.create_connection

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        queue = scripted.answers.get(str(host))
        if queue is None:
            return real_getaddrinfo(host, port, *args, **kwargs)
        scripted.lookups.append(str(host))
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        if ":" in address:
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        host, port = str(address[0]), address[1]
        try:
            ipaddress.ip_address(host)
        except ValueError:  # a name: resolved here, as the real create_connection does
            host = str(getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][4][0])
        scripted.connects.append(host)
        if host not in ("127.0.0.1", "::1"):
            raise ConnectionRefusedError(f"test edge: no connections to {host}")
        return real_create_connection((host, port), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return scripted


# --- One guard, the same answer everywhere -------------------------------------------------


def _forms(v4: str, native_v6: str) -> list[tuple[str, str]]:
    """An IPv4 address, the same kind of address in IPv6, and IPv6 forms that carry the IPv4."""
    packed = int(ipaddress.IPv4Address(v4))
    high, low = packed >> 16, packed & 0xFFFF
    return [
        ("ipv4", v4),
        ("ipv6", native_v6),
        ("ipv4-mapped", f"::ffff:{v4}"),
        ("nat64", f"64:ff9b::{high:x}:{low:x}"),
        ("6to4", f"2002:{high:x}:{low:x}::1"),
    ]


KINDS = {
    "loopback": _forms("127.0.0.1", "::1"),
    "private": _forms("10.1.2.3", "fd12:3456::1"),
    "metadata": _forms("169.254.169.254", "fd00:ec2::254"),
    "link-local": _forms("169.254.10.20", "fe80::1"),
    "public": _forms("93.184.216.34", "2606:2800:220:1::1"),
}
CASES = [
    pytest.param(kind, address, id=f"{kind}-{form}")
    for kind, forms in KINDS.items()
    for form, address in forms
]


def _expect_refused(kind: str, allow_private: bool) -> bool:
    if kind in ("metadata", "link-local"):
        return True  # never, whatever the operator allows
    return kind in ("loopback", "private") and not allow_private


def _refused_by_url_check(name: str) -> bool:
    refusal: ValidationFailed | None = None
    try:
        check_public_url(f"http://{name}/hook", field="callback_url")
    except ValidationFailed as exc:
        refusal = exc
    if refusal is not None:
        assert "callback_url" in refusal.fields
    return refusal is not None


def _refused_by_http_tool(name: str) -> bool:
    refusal: ToolFailed | None = None
    try:
        resolve_public(name, 80)
    except ToolFailed as exc:
        refusal = exc
    if refusal is not None:
        assert "private, loopback, link-local or reserved" in str(refusal)
    return refusal is not None


def _refused_by_connection(name: str, edge: Edge, address: str) -> bool:
    with (
        guarded_client(timeout=2.0, follow_redirects=False) as client,
        pytest.raises(httpx2.ConnectError) as excinfo,
    ):
        client.get(f"http://{name}:9/x")
    refused = refusal_in(excinfo.value) is not None
    # Refused: no socket was opened. Allowed: the socket went to the checked address.
    connected = [ipaddress.ip_address(a) for a in edge.connects]
    assert connected == ([] if refused else [ipaddress.ip_address(address)])
    return refused


@pytest.mark.parametrize("allow_private", [False, True], ids=["default", "allow-private"])
@pytest.mark.parametrize(("kind", "address"), CASES)
@pytest.mark.parametrize("entry", ["url-check", "http-tool", "connection"])
def test_every_outbound_path_gives_the_same_answer(
    settings: Any, edge: Edge, entry: str, kind: str, address: str, allow_private: bool
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = allow_private
    edge.answers["target.test"] = [address]
    if entry == "url-check":
        refused = _refused_by_url_check("target.test")
    elif entry == "http-tool":
        refused = _refused_by_http_tool("target.test")
    else:
        refused = _refused_by_connection("target.test", edge, address)
    assert refused == _expect_refused(kind, allow_private)


@pytest.mark.parametrize(
    "literal", ["[64:ff9b::a9fe:a9fe]", "[2002:7f00:1::1]", "[::ffff:169.254.169.254]"]
)
def test_ip_literals_in_urls_are_judged_like_names(settings: Any, literal: str) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    assert _refused_by_url_check(literal)


# --- Webhooks: the checked address is the one connected to -----------------------------------


@pytest.mark.django_db
def test_dns_rebinding_cannot_send_a_webhook_to_loopback(
    settings: Any, edge: Edge, world: World
) -> None:
    # Given a name that answers a public address first and 127.0.0.1 afterwards, and a
    # receiver listening on 127.0.0.1 at the URL's port
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    with WebhookReceiver() as receiver:
        port = receiver.server.server_port
        edge.answers["rebind.test"] = ["93.184.216.34", "127.0.0.1"]
        with schema_context(world.workspace_a.schema_name):
            delivery = WebhookDelivery.objects.create(
                event="agent_run.finished",
                url=f"http://rebind.test:{port}/hooks/runs",
                payload={"event": "agent_run.finished"},
            )
            # When the delivery is attempted
            webhook_attempt(delivery.pk)
            delivery.refresh_from_db()

    # Then the name was resolved once, the connection went to the checked public address
    # (refused by the test's edge), and nothing reached loopback
    assert receiver.received == []
    assert edge.lookups == ["rebind.test"]
    assert edge.connects == ["93.184.216.34"]
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.last_status_code is None


@pytest.mark.django_db
def test_a_webhook_to_an_address_the_guard_refuses_fails_for_good(
    settings: Any, edge: Edge, world: World
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # still never metadata
    edge.answers["metadata.test"] = ["169.254.169.254"]
    with schema_context(world.workspace_a.schema_name):
        delivery = WebhookDelivery.objects.create(
            event="agent_run.finished", url="http://metadata.test/latest/", payload={}
        )
        assert webhook_attempt(delivery.pk) is None
        delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert "cloud metadata" in delivery.last_error
    assert edge.connects == []


# --- Providers: a workspace's base URL is checked when it is used ----------------------------


def _ask() -> ChatRequest:
    return ChatRequest(model="m1", messages=(Message(role="user", content="Hi"),), max_tokens=5)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


def test_a_saved_base_url_that_is_internal_now_is_refused_at_call_time(
    settings: Any, fake_openai: FakeOpenAI
) -> None:
    # The URL passed the check when it was saved (private networks were allowed then).
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    config = ProviderConfig(kind="openai_compatible", api_key="k", base_url=fake_openai.base_url)
    with pytest.raises(ProviderError) as excinfo:
        get_provider(config).complete(_ask())
    assert excinfo.value.retryable is False
    assert "private or loopback" in excinfo.value.message
    assert fake_openai.requests == []


@pytest.mark.parametrize("kind", ["openai_compatible", "anthropic"])
def test_a_provider_redirect_to_an_internal_address_is_not_followed(
    settings: Any, edge: Edge, kind: str
) -> None:
    # A model server on the private network (allowed) answers 307 to the metadata service.
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    with Redirector("http://169.254.169.254/latest/meta-data/iam/") as server:
        base_url = server.url + ("/v1" if kind == "openai_compatible" else "")
        config = ProviderConfig(kind=kind, api_key="k", base_url=base_url, timeout=5.0)
        with pytest.raises(ProviderError) as excinfo:
            get_provider(config).complete(_ask())
    assert server.paths  # the first hop was made
    assert "169.254.169.254" not in edge.connects
    assert excinfo.value.retryable is False
    assert "cloud metadata" in excinfo.value.message


def test_the_operators_own_base_url_is_trusted(settings: Any, fake_openai: FakeOpenAI) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    settings.LLM_PLATFORM_BASE_URLS = {"openai": fake_openai.base_url}
    config = ProviderConfig(kind="openai", api_key="k", base_url=fake_openai.base_url)
    assert get_provider(config).complete(_ask()).text
    assert len(fake_openai.requests) == 1
