"""Scraping `/metrics` in tests, as Prometheus does, and reading its series."""

from __future__ import annotations

from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "metrics-test-token-0123456789"

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: Client | None = None) -> Series:
    """Every sample of `/metrics` by (name, sorted labels). Needs settings.METRICS_TOKEN = TOKEN."""
    response = (client or Client()).get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    series: Series = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            series[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return series


def value(series: Series, name: str, **labels: str) -> float:
    """The sample `name` with exactly `labels` (0 when absent)."""
    return series.get((name, tuple(sorted(labels.items()))), 0.0)


def total(series: Series, name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include `labels`."""
    return sum(
        v
        for (n, sample_labels), v in series.items()
        if n == name and labels.items() <= dict(sample_labels).items()
    )
