"""The one guard for connections to addresses a user chose: webhook callbacks, provider base
URLs and the http_request tool all go through it.

Always refused, whatever the settings: link-local addresses (169.254.0.0/16, where every cloud
keeps its metadata service at 169.254.169.254, and fe80::/10), the metadata addresses that live
elsewhere (AWS fd00:ec2::254, Alibaba 100.100.100.200), multicast, unspecified, broadcast and
reserved or documentation ranges.

Refused unless `OUTBOUND_ALLOW_PRIVATE_NETWORKS`: loopback, RFC 1918 (10/8, 172.16/12,
192.168/16), shared address space (100.64/10) and unique-local IPv6 (fc00::/7). That switch is
for self-hosters whose model servers or receivers live on their own network; it never opens
link-local or metadata addresses.

An IPv6 address that carries an IPv4 address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
translated `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4 `2002::/16`) is
judged by the IPv4 address it carries.

Invariant of `guarded_client` and `GuardedRequestsAdapter` (and of the HTTP tool's own
pinning): a host name is resolved once per connection, every address it resolves to is checked,
and the socket connects to a checked address. No second DNS answer is ever used, so DNS
rebinding cannot slip in between the check and the connection; each redirect hop opens its own
checked connection.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpcore2
import httpx2
import requests
import requests.adapters
import requests.structures
from django.conf import settings

from core.exceptions import ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_net = ipaddress.ip_network
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
PRIVATE_NETWORKS = (
    _net("127.0.0.0/8"),
    _net("10.0.0.0/8"),
    _net("172.16.0.0/12"),
    _net("192.168.0.0/16"),
    _net("100.64.0.0/10"),
    _net("::1/128"),
    _net("fc00::/7"),
)
_NAT64 = (_net("64:ff9b::/96"), _net("64:ff9b:1::/48"))
_TRANSLATED = _net("::ffff:0:0:0/96")
_COMPATIBLE = _net("::/96")


class AddressRefused(Exception):
    """The guard refused `host` (resolved to `address`, shown with any IPv4 it carries); the
    message says why, for a person."""

    def __init__(self, message: str, *, host: str, address: str) -> None:
        super().__init__(message)
        self.message = message
        self.host = host
        self.address = address


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, translated, NAT64,
    6to4), or None."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in _NAT64) or address in _TRANSLATED:
        return low32
    if address in _COMPATIBLE and int(address) > 1:  # not :: (unspecified) nor ::1 (loopback)
        return low32
    return None


def address_refusal(address: IPAddress, *, allow_private: bool | None = None) -> str | None:
    """Why a connection to `address` is refused (a phrase such as "a link-local address"), or
    None when it is allowed. `allow_private` defaults to OUTBOUND_ALLOW_PRIVATE_NETWORKS."""
    if allow_private is None:
        allow_private = bool(settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS)
    inner = embedded_ipv4(address)
    if inner is not None:
        return address_refusal(inner, allow_private=allow_private)
    if address in METADATA:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services live)"
    if address.is_multicast or address.is_unspecified:
        return "a multicast or unspecified address"
    if address.is_global:
        return None
    if any(address in net for net in PRIVATE_NETWORKS):
        return None if allow_private else "a private or loopback address"
    return "a reserved address"


def shown(address: IPAddress) -> str:
    """The address as a person should read it: with the IPv4 address it carries, if any."""
    inner = embedded_ipv4(address)
    return f"{address} ({inner})" if inner is not None else str(address)


def resolve_checked(host: str, port: int) -> list[str]:
    """Resolve `host` once and return the addresses to connect to, all of them checked.

    Raises AddressRefused when any address is refused (a name that answers with one internal
    address among public ones is treated as hostile), OSError or UnicodeError when the name
    does not resolve."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise OSError(f"'{host}' has no address")
    for address in addresses:
        reason = address_refusal(address)
        if reason is not None:
            raise AddressRefused(
                f"'{host}' resolves to {shown(address)}, {reason}: outbound requests may not "
                "reach private or reserved addresses.",
                host=host,
                address=shown(address),
            )
    return list(dict.fromkeys(str(a) for a in addresses))


def check_public_url(url: str, *, field: str = "url") -> None:
    """Raise ValidationFailed (naming `field`) unless `url` is http(s) to an allowed host.

    A check when a URL is saved, so the person saving it hears at once; every connection is
    checked again when it is made (`guarded_client`)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse(field, f"'{url}' is not a valid URL.") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refuse(field, "Use an http:// or https:// URL with a host name.")
    try:
        resolve_checked(parts.hostname, port or (443 if parts.scheme == "https" else 80))
    except AddressRefused as exc:
        raise _refuse(field, exc.message) from exc
    except (OSError, UnicodeError) as exc:
        raise _refuse(field, f"The host '{parts.hostname}' does not resolve.") from exc


def _refuse(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, fields={field: [message]})


def refusal_in(exc: BaseException) -> AddressRefused | None:
    """The AddressRefused behind `exc` (SDKs and httpx wrap it in their own errors), or None."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, AddressRefused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


# --- Connections -----------------------------------------------------------------------------


class GuardedBackend(httpcore2.SyncBackend):
    """httpcore's socket backend, but the host is resolved here, checked, and the socket
    connects to a checked address. TLS still verifies the certificate against the host name
    (httpcore passes it as the server name)."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        try:
            addresses = resolve_checked(host, port)
        except AddressRefused as exc:
            # A ConnectError so httpx and the SDKs report it as a failed connection; the
            # refusal stays reachable as its cause (`refusal_in`).
            raise httpcore2.ConnectError(exc.message) from exc
        except (OSError, UnicodeError) as exc:
            raise httpcore2.ConnectError(f"'{host}' does not resolve: {exc}") from exc
        for position, address in enumerate(addresses, start=1):
            try:
                return super().connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout):
                if position == len(addresses):
                    raise
        raise httpcore2.ConnectError(f"'{host}' has no address")  # pragma: no cover


class GuardedTransport(httpx2.HTTPTransport):
    """An httpx transport whose every connection goes through `GuardedBackend`; no proxy
    from the environment (a proxy would resolve the name itself, unchecked)."""

    def __init__(self) -> None:
        super().__init__(trust_env=False)
        # HTTPTransport takes no network backend, so its pool is rebuilt with one; the other
        # arguments are HTTPTransport's own defaults.
        self._pool = httpcore2.ConnectionPool(
            ssl_context=httpx2.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(),
        )


def guarded_client(*, timeout: float, follow_redirects: bool) -> httpx2.Client:
    """An httpx client for user-chosen URLs. Redirects, when followed, are requests like any
    other: each hop connects through the guard, so a redirect to an address the guard refuses
    fails instead of being followed."""
    return httpx2.Client(
        transport=GuardedTransport(),
        timeout=timeout,
        follow_redirects=follow_redirects,
        trust_env=False,
    )


class GuardedAsyncBackend(httpcore2.AnyIOBackend):
    """`GuardedBackend` for async clients (the `mcp` SDK's): the host resolved (in a thread),
    checked, and the socket connected to a checked address."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        import anyio.to_thread

        try:
            addresses = await anyio.to_thread.run_sync(resolve_checked, host, port)
        except AddressRefused as exc:
            raise httpcore2.ConnectError(exc.message) from exc
        except (OSError, UnicodeError) as exc:
            raise httpcore2.ConnectError(f"'{host}' does not resolve: {exc}") from exc
        for position, address in enumerate(addresses, start=1):
            try:
                return await super().connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout):
                if position == len(addresses):
                    raise
        raise httpcore2.ConnectError(f"'{host}' has no address")  # pragma: no cover


class GuardedAsyncTransport(httpx2.AsyncHTTPTransport):
    """`GuardedTransport` for async clients."""

    def __init__(self) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedAsyncBackend(),
        )


def guarded_async_client(
    *, timeout: float, headers: dict[str, str] | None = None
) -> httpx2.AsyncClient:
    """An async httpx client for user-chosen URLs; redirects are not followed."""
    return httpx2.AsyncClient(
        transport=GuardedAsyncTransport(),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers=headers,
    )


class GuardedRequestsAdapter(requests.adapters.BaseAdapter):
    """A `requests` transport adapter that sends every request through `guarded_client`, for
    libraries built on requests (allauth's OpenID Connect client). requests follows redirects
    itself by sending each hop through the adapter again, so every hop is guarded too."""

    def __init__(self, *, timeout: float) -> None:
        super().__init__()
        self._client = guarded_client(timeout=timeout, follow_redirects=False)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: object = None,
        verify: object = True,
        cert: object = None,
        proxies: object = None,
    ) -> requests.Response:
        headers = {
            k: v if isinstance(v, str) else v.decode("latin-1")
            for k, v in request.headers.items()
            if k.lower() != "content-length"
        }
        body = request.body
        content = body.encode() if isinstance(body, str) else body
        if content is not None and not isinstance(content, bytes):
            raise requests.ConnectionError("Streamed request bodies are not supported.")
        try:
            answer = self._client.request(
                request.method or "GET", request.url or "", headers=headers, content=content
            )
        except httpx2.HTTPError as exc:
            raise requests.ConnectionError(str(exc), request=request) from exc
        response = requests.Response()
        response.status_code = answer.status_code
        # httpx already decoded the body: its encoding headers no longer describe it.
        response.headers = requests.structures.CaseInsensitiveDict(
            {
                k: v
                for k, v in answer.headers.items()
                if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
            }
        )
        response._content = answer.content  # noqa: SLF001 (how requests holds a read body)
        response.reason = answer.reason_phrase
        response.encoding = answer.encoding
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        self._client.close()


def guarded_requests_session(*, timeout: float) -> requests.Session:
    """A requests session whose http(s) requests all go through the guard."""
    session = requests.Session()
    session.trust_env = False
    adapter = GuardedRequestsAdapter(timeout=timeout)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
