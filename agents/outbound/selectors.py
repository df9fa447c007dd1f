"""Reads for outbound access: the workspace's host allowlist and the matching rule.

Must run in the workspace's schema. The rule, in one place for the page and the HTTP tool:
an entry `api.example.com` matches exactly that host; `*.example.com` matches every subdomain
of example.com (`a.example.com`, `a.b.example.com`) but not `example.com` itself.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from accounts.models import User
from agents.models import AllowedHost
from tenants.permissions import Access, Perm

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def canonical_host(raw: str) -> str | None:
    """`raw` as the allowlist stores and compares it: lower case, no trailing dot, IDNA
    (punycode) for international names, IPv6 without brackets; None when it is not a host."""
    host = raw.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or len(host) > 253:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    labels = host.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return None
    return host


def host_matches(host: str, entries: Iterable[str]) -> str | None:
    """The allowlist entry that lets `host` (already canonical) through, or None."""
    for entry in entries:
        if entry.startswith("*."):
            suffix = entry[1:]  # ".example.com"
            if host.endswith(suffix) and len(host) > len(suffix):
                return entry
        elif host == entry:
            return entry
    return None


def allowed_host_entries() -> list[str]:
    """Every entry of the current workspace (the HTTP tool's check; no access object: the tool
    runs inside an agent run that was already authorised)."""
    return list(AllowedHost.objects.values_list("host", flat=True))


@dataclass(frozen=True)
class HostRow:
    id: int
    host: str
    wildcard: bool
    added_at: datetime
    added_by: str


def allowed_hosts_list(*, access: Access) -> list[HostRow]:
    """The entries with who added them (two queries whatever the length)."""
    access.require(Perm.WORKSPACE_UPDATE)
    entries = list(AllowedHost.objects.order_by("host"))
    emails = dict(
        User.objects.filter(
            pk__in={e.created_by_id for e in entries if e.created_by_id}
        ).values_list("pk", "email")
    )
    return [
        HostRow(
            id=e.pk,
            host=e.host,
            wildcard=e.host.startswith("*."),
            added_at=e.created_at,
            added_by=emails.get(e.created_by_id, "") if e.created_by_id else "",
        )
        for e in entries
    ]
