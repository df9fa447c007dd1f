from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from billing.pricing import Price

_PRICE: dict[str, Any] = {
    "max_digits": 12,
    "decimal_places": 6,
    "validators": [MinValueValidator(Decimal(0))],
}


class ModelPrice(models.Model):
    """Platform-wide price of one provider model, US dollars per million tokens. Staff edit it
    in the admin; the gateway prices every call with it."""

    provider = models.CharField(max_length=32, help_text="anthropic, openai, openai_compatible")
    model = models.CharField(max_length=128)
    input_per_mtok = models.DecimalField("input $/Mtok", **_PRICE)
    output_per_mtok = models.DecimalField("output $/Mtok", **_PRICE)
    cached_input_per_mtok = models.DecimalField(
        "cached input $/Mtok",
        null=True,
        blank=True,
        help_text="Empty: cached input costs the full input price.",
        **_PRICE,
    )
    cache_write_per_mtok = models.DecimalField(
        "cache write $/Mtok",
        null=True,
        blank=True,
        help_text="Empty: cache writes cost the full input price.",
        **_PRICE,
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "model"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model"], name="one_price_per_model"),
            models.CheckConstraint(
                condition=Q(input_per_mtok__gte=0) & Q(output_per_mtok__gte=0),
                name="model_price_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"

    def as_price(self) -> Price:
        return Price(
            input_per_mtok=self.input_per_mtok,
            output_per_mtok=self.output_per_mtok,
            cached_input_per_mtok=self.cached_input_per_mtok,
            cache_write_per_mtok=self.cache_write_per_mtok,
        )
