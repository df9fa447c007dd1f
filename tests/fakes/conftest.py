"""Fixtures of the fakes' own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import FakeStripe


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    """A FakeStripe on loopback; no request may have made it fail (a 5xx of its own)."""
    with FakeStripe() as fake:
        yield fake
    assert fake.server_errors == []
