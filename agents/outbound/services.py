"""Writes for outbound access: adding and removing hosts on the workspace allowlist.

Owners and admins (`workspace.update`) manage the list; every change is in the audit log.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.db import IntegrityError, transaction

from agents.models import AllowedHost
from agents.outbound.guard import address_refusal, shown
from agents.outbound.selectors import canonical_host
from core.exceptions import NotFound, ValidationFailed
from tenants import audit
from tenants.permissions import Access, Perm

MAX_HOSTS = 500
HOST_ADDED = audit.Action.HOST_ADDED
HOST_REMOVED = audit.Action.HOST_REMOVED


def _invalid(message: str) -> ValidationFailed:
    return ValidationFailed(message, fields={"host": [message]})


def host_validate(raw: str) -> str:
    """The canonical form of an allowlist entry, or ValidationFailed naming `host`.

    Accepted: a host name (`api.example.com`, international names too), `*.example.com` for
    every subdomain, or a public IP address. Refused: schemes, paths, ports, user info, bare
    `*` or `*.tld`, and (unless OUTBOUND_ALLOW_PRIVATE_NETWORKS) `localhost` and private,
    loopback, link-local or reserved IP addresses, which the tool would refuse anyway."""
    value = (raw or "").strip()
    if not value:
        raise _invalid("Enter a host name, like api.example.com or *.example.com.")
    if any(mark in value for mark in ("://", "/", "?", "#", "@", " ")):
        raise _invalid("Enter the host name only, like api.example.com: no http://, path or query.")
    wildcard = value.startswith("*.")
    body = value[2:] if wildcard else value
    if "*" in body:
        raise _invalid("A wildcard is only allowed at the start, as in *.example.com.")
    bracketed = body.startswith("[") and body.endswith("]")
    if not bracketed and body.count(":") == 1:
        raise _invalid("Leave out the port: the allowlist is by host name (any port).")
    host = canonical_host(body)
    if host is None:
        raise _invalid(f"'{value}' is not a valid host name.")
    private_ok = settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if wildcard:
            raise _invalid("A wildcard needs a domain name, not an IP address.")
        if address_refusal(address, allow_private=private_ok) is not None:
            raise _invalid(
                f"{shown(address)} is a private, loopback or reserved address; "
                "agents may only reach the public internet."
            )
        return host
    if wildcard and "." not in host:
        raise _invalid("A wildcard must name a domain, like *.example.com (not *.com).")
    if not private_ok and (host == "localhost" or host.endswith(".localhost")):
        raise _invalid("localhost is this server itself; agents may not reach it.")
    return f"*.{host}" if wildcard else host


@transaction.atomic
def allowed_host_add(*, access: Access, host: str) -> AllowedHost:
    access.require(Perm.WORKSPACE_UPDATE)
    entry = host_validate(host)
    if AllowedHost.objects.count() >= MAX_HOSTS:
        raise _invalid(f"The allowlist holds at most {MAX_HOSTS} hosts; remove some first.")
    if AllowedHost.objects.filter(host=entry).exists():
        raise _invalid(f"{entry} is already on the list.")
    try:
        with transaction.atomic():
            allowed = AllowedHost.objects.create(
                host=entry, created_by_id=access.user.pk if access.user else None
            )
    except IntegrityError as exc:  # added at the same moment by someone else
        raise _invalid(f"{entry} is already on the list.") from exc
    audit.record_for(access, action=HOST_ADDED, target=allowed)
    return allowed


@transaction.atomic
def allowed_host_remove(*, access: Access, host_id: int) -> str:
    """Remove an entry; returns the host it allowed."""
    access.require(Perm.WORKSPACE_UPDATE)
    allowed = AllowedHost.objects.select_for_update().filter(pk=host_id).first()
    if allowed is None:
        raise NotFound("That host is not on this workspace's allowlist.")
    audit.record_for(access, action=HOST_REMOVED, target=allowed)
    allowed.delete()
    return allowed.host
