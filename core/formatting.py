"""How money and durations read on every page: one formatter each, so a run, a step and a chat
turn show the same figure the same way."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.utils import timezone


def cost_text(cost: Decimal | int | float | None) -> str:
    """Dollars to the micro-dollar the ledger keeps, without trailing zeros: $0.0045."""
    digits = f"{Decimal(cost or 0):.6f}".rstrip("0")
    whole, _, cents = digits.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def duration_text(ms: int | None) -> str:
    """840 ms, 2.5 s, 3 min 4 s, 1 h 2 min; "—" when unknown."""
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def elapsed_ms(started: datetime | None, finished: datetime | None) -> int | None:
    """Milliseconds from `started` to `finished` (or now, while still going); None if unstarted."""
    if started is None:
        return None
    end = finished or timezone.now()
    return max(0, int((end - started).total_seconds() * 1000))
