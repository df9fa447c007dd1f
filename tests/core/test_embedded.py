"""The embedded PostgreSQL that `scripts/dev` and `scripts/test` start gets a page cache sized
to the machine (decision 34), not PostgreSQL's 128 MB default."""

from __future__ import annotations

import os

import pytest
from django.db import connection

from config import services
from config.embedded import shared_buffers_mb


def test_shared_buffers_follow_the_machine_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBEDDED_PG_SHARED_BUFFERS_MB", raising=False)
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    assert shared_buffers_mb() == max(128, min(1024, memory_mb // 4))
    monkeypatch.setenv("EMBEDDED_PG_SHARED_BUFFERS_MB", "300")
    assert shared_buffers_mb() == 300


@pytest.mark.django_db
def test_the_running_embedded_server_uses_them() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setting::bigint * 8192 / 1048576 FROM pg_settings WHERE name = 'shared_buffers'"
        )
        (running,) = cursor.fetchone()
    embedded = os.environ.get("DATABASE_URL") == services.embedded_database_url(
        services.local_dir()
    )
    if embedded:
        assert running == shared_buffers_mb()
    else:
        assert running >= 16  # an external server is configured by its operator
