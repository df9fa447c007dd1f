"""Where a request may go: http(s) only, a host on the workspace allowlist, every address it
resolves to public (`agents.outbound.guard`), and the connection pinned to the checked address."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx2
from django.urls import NoReverseMatch, reverse

from agents.outbound.guard import AddressRefused, resolve_checked
from agents.outbound.selectors import canonical_host, host_matches
from agents.tools.base import ToolFailed
from tenants.models import Workspace
from tenants.schemas import current_schema


@dataclass(frozen=True)
class Target:
    """A URL that passed the checks, and the address it was checked at."""

    url: str
    scheme: str
    host: str  # canonical (lower case, IDNA)
    port: int | None
    address: str

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        return f"{name}:{self.port}" if self.port is not None else name

    def pinned_url(self) -> httpx2.URL:
        return httpx2.URL(self.url).copy_with(host=self.address)


def _outbound_page() -> str:
    slug = Workspace.objects.filter(schema_name=current_schema()).values_list("slug", flat=True)
    try:
        return reverse("outbound_hosts", kwargs={"workspace_slug": slug.first() or "-"})
    except NoReverseMatch:  # pragma: no cover - the URL always exists
        return "Outbound access"


def resolve_public(host: str, port: int, *, via: str = "") -> str:
    """Resolve once through the outbound guard (`agents.outbound.guard`); returns the checked
    address to connect to."""
    try:
        addresses = resolve_checked(host, port)
    except AddressRefused as exc:
        raise ToolFailed(
            f"Refused: '{host}'{via} resolves to {exc.address}, a private, loopback, "
            "link-local or reserved address. The http_request tool only reaches the "
            "public internet."
        ) from exc
    except (OSError, UnicodeError) as exc:
        raise ToolFailed(f"The host '{host}'{via} does not resolve.") from exc
    return addresses[0]


def check_target(url: str, entries: list[str], *, redirected_from: str | None = None) -> Target:
    """Raise ToolFailed (saying why, for the model and the person reading the run) unless
    `url` may be requested. `entries`: the workspace allowlist."""
    via = f" (a redirect from {redirected_from})" if redirected_from else ""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ToolFailed(f"'{url}'{via} is not a valid URL: {exc}.") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolFailed(f"Only http:// and https:// URLs with a host can be requested{via}.")
    if parts.username is not None or parts.password is not None:
        raise ToolFailed("URLs with a user name or password (user@host) are not allowed.")
    host = canonical_host(parts.hostname)
    if host is None:
        raise ToolFailed(f"'{parts.hostname}'{via} is not a valid host name.")
    if not entries:
        raise ToolFailed(
            "This workspace allows no hosts yet, so every URL is refused. An owner or admin "
            f"can add hosts on the Outbound access page ({_outbound_page()})."
        )
    if host_matches(host, entries) is None:
        raise ToolFailed(
            f"Refused: '{host}'{via} is not on this workspace's allowlist of hosts. An owner or "
            f"admin can add it on the Outbound access page ({_outbound_page()})."
        )
    default_port = 443 if parts.scheme == "https" else 80
    address = resolve_public(host, port or default_port, via=via)
    return Target(url=url, scheme=parts.scheme, host=host, port=port, address=address)
