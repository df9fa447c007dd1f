"""The outbound guard lives in `core.outbound_guard` (workspace sign-in, in tenants, needs it
too: docs/decisions.md 104); these names stay importable from here."""

from core.outbound_guard import (
    AddressRefused,
    GuardedBackend,
    GuardedTransport,
    address_refusal,
    check_public_url,
    embedded_ipv4,
    guarded_client,
    refusal_in,
    resolve_checked,
    shown,
)

__all__ = [
    "AddressRefused",
    "GuardedBackend",
    "GuardedTransport",
    "address_refusal",
    "check_public_url",
    "embedded_ipv4",
    "guarded_client",
    "refusal_in",
    "resolve_checked",
    "shown",
]
