"""The suite's hooks, and its fixtures registered as plugins: they live in `tests/fixtures/`,
plain helpers in `tests/helpers/`. Tests import neither from a conftest."""

from __future__ import annotations

import pytest
from django.conf import settings

pytest_plugins = [
    "tests.fixtures.personas",
    "tests.fixtures.models",
    "tests.fixtures.worker",
    "tests.fixtures.marketplace",
    "tests.fixtures.browser",
    "tests.fixtures.billing",
    "tests.fixtures.purchases",
]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on committed data flush the database afterwards. Workspace tables reference
    public ones (users), so the flush must cascade, which Django does only when
    `available_apps` is set: give those tests the full app list."""
    marker = pytest.mark.django_db(transaction=True, available_apps=list(settings.INSTALLED_APPS))
    for item in items:
        if "committed_world" in getattr(item, "fixturenames", ()):
            item.add_marker(marker, append=False)
