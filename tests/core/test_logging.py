"""A clean start reads cleanly: every 4xx is logged once, in our format (Django's own DEBUG
console handler used to print it a second time)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.utils.log import configure_logging


def _configure() -> None:
    configure_logging(django_settings.LOGGING_CONFIG, django_settings.LOGGING)


@pytest.mark.django_db
def test_a_404_is_logged_once_with_debug_on(settings: Any, capsys: Any) -> None:
    settings.DEBUG = True
    _configure()  # the handlers write to the captured stderr
    try:
        Client().get("/definitely-not-here/")
        err = capsys.readouterr().err
    finally:
        with capsys.disabled():
            _configure()
    assert err.count("Not Found: /definitely-not-here/") == 1, err
    assert "WARNING django.request" in err
