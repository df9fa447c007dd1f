"""Email domain verification by DNS: the owner publishes a TXT record and we read it back.

The record lives at `_agentmarket-verify.<domain>` and holds `agentmarket-verify=<token>`; the
token is random per claim, so only someone who controls the domain's DNS can publish it. Names
are resolved through `SSO_DNS_NAMESERVERS` when set (tests point it at a loopback DNS server),
else the system's resolver."""

from __future__ import annotations

import re

import dns.exception
import dns.resolver
from django.conf import settings

RECORD_PREFIX = "_agentmarket-verify"
VALUE_PREFIX = "agentmarket-verify="

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DOMAIN_RE = re.compile(rf"^(?:{_LABEL}\.)+[a-z]{{2,63}}$")


class DnsUnavailable(Exception):
    """The resolver gave no answer (timeout, no reachable name server)."""


def record_name(domain: str) -> str:
    return f"{RECORD_PREFIX}.{domain}"


def record_value(token: str) -> str:
    return f"{VALUE_PREFIX}{token}"


def _resolver() -> dns.resolver.Resolver:
    servers = [s for s in settings.SSO_DNS_NAMESERVERS if s]
    resolver = dns.resolver.Resolver(configure=not servers)
    if servers:
        hosts, ports = [], set()
        for server in servers:
            host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
            hosts.append(host)
            ports.add(int(port) if port else 53)
        resolver.nameservers = hosts
        resolver.port = ports.pop() if len(ports) == 1 else 53
    resolver.lifetime = settings.SSO_DNS_TIMEOUT_SECONDS
    resolver.timeout = settings.SSO_DNS_TIMEOUT_SECONDS
    return resolver


def txt_values(name: str) -> list[str]:
    """The TXT strings published at `name` ([] when there are none). Raises DnsUnavailable
    when no name server answered."""
    try:
        answer = _resolver().resolve(name, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        raise DnsUnavailable(str(exc)) from exc
    values = []
    for rdata in answer:
        values.append(b"".join(rdata.strings).decode("utf-8", "replace"))
    return values


def token_published(domain: str, token: str) -> bool:
    return record_value(token) in {v.strip() for v in txt_values(record_name(domain))}
