from __future__ import annotations


def int_or_none(value: str | None) -> int | None:
    """A query parameter as an integer; None when missing or not a number."""
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
