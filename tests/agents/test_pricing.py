from __future__ import annotations

from decimal import Decimal

from agents.providers.base import Usage
from billing.pricing import Price, usage_cost

SONNET_LIKE = Price(
    input_per_mtok=Decimal("3"),
    output_per_mtok=Decimal("15"),
    cached_input_per_mtok=Decimal("0.30"),
    cache_write_per_mtok=Decimal("3.75"),
)


def test_cost_adds_each_kind_of_token_at_its_own_price() -> None:
    usage = Usage(
        input_tokens=1_000, output_tokens=500, cached_input_tokens=10_000, cache_write_tokens=2_000
    )
    # 1000*3 + 500*15 + 10000*0.30 + 2000*3.75 = 3000 + 7500 + 3000 + 7500 = 21000 per million
    assert usage_cost(usage, SONNET_LIKE) == Decimal("0.021000")


def test_cached_input_without_a_cached_price_costs_full_price() -> None:
    price = Price(input_per_mtok=Decimal("2.50"), output_per_mtok=Decimal("10"))
    assert usage_cost(Usage(cached_input_tokens=1_000_000), price) == Decimal("2.500000")


def test_tiny_calls_round_to_a_millionth_of_a_dollar_half_up() -> None:
    price = Price(input_per_mtok=Decimal("0.15"), output_per_mtok=Decimal("0.60"))
    # 3*0.15 + 1*0.60 = 1.05 per million → 0.00000105 → 0.000001
    assert usage_cost(Usage(input_tokens=3, output_tokens=1), price) == Decimal("0.000001")
    # 10 output tokens at 0.60 → 0.000006 exactly
    assert usage_cost(Usage(output_tokens=10), price) == Decimal("0.000006")


def test_usage_adds_up_across_calls() -> None:
    total = Usage(input_tokens=1, output_tokens=2) + Usage(input_tokens=3, cached_input_tokens=4)
    assert total == Usage(input_tokens=4, output_tokens=2, cached_input_tokens=4)
