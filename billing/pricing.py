"""What a model call cost. Prices are US dollars per million tokens; arithmetic is exact
(Decimal) and rounded once, at the end, to a millionth of a dollar. Billing owns prices (the
`ModelPrice` table); the gateway in agents asks it what a call's usage cost."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

MILLION = Decimal(1_000_000)
MICRO_DOLLAR = Decimal("0.000001")


class TokenUsage(Protocol):
    """The token counts of one call (agents.providers.base.Usage has them)."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cached_input_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...


@dataclass(frozen=True)
class Price:
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None  # None: cached input costs full input price
    cache_write_per_mtok: Decimal | None = None  # None: cache writes cost full input price


def usage_cost(usage: TokenUsage, price: Price) -> Decimal:
    cached = price.cached_input_per_mtok
    writes = price.cache_write_per_mtok
    total = (
        usage.input_tokens * price.input_per_mtok
        + usage.output_tokens * price.output_per_mtok
        + usage.cached_input_tokens * (price.input_per_mtok if cached is None else cached)
        + usage.cache_write_tokens * (price.input_per_mtok if writes is None else writes)
    ) / MILLION
    return total.quantize(MICRO_DOLLAR, rounding=ROUND_HALF_UP)
