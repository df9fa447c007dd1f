"""Production fails closed: the server and worker entry points load production settings when
DJANGO_SETTINGS_MODULE is unset, and production settings refuse to start without each required
variable (naming it) or with DEBUG on. Each case runs in a fresh interpreter, as a deploy would."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

REQUIRED = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
    "DJANGO_ALLOWED_HOSTS": "agents.example.com",
    "DATABASE_URL": "postgres://agentmarket:secret@db.internal:5432/agentmarket",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "EMAIL_URL": "smtp+tls://mailer:secret@smtp.example.com:587",
}
# Variables that would change the answer when inherited from the test run's environment.
SCRUBBED = (
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_DEBUG",
    "EMAIL_BACKEND",
    *REQUIRED,
    *(f"{name}_FILE" for name in REQUIRED),
)

SHOW_SETTINGS = (
    "from django.conf import settings; "
    "print(settings.SETTINGS_MODULE, settings.DEBUG, settings.ALLOWED_HOSTS)"
)
ENTRY_POINTS = {
    "wsgi": "import config.wsgi; " + SHOW_SETTINGS,
    "asgi": "import config.asgi; " + SHOW_SETTINGS,
    "celery": "from config.celery import app; app.loader.import_default_modules(); "
    + SHOW_SETTINGS,
}


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_entry_points_without_a_settings_module_refuse_to_start_unconfigured(entry: str) -> None:
    result = _python(ENTRY_POINTS[entry])
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY" in result.stderr


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_entry_points_without_a_settings_module_run_production_settings(entry: str) -> None:
    result = _python(ENTRY_POINTS[entry], **REQUIRED)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:3] == [
        "config.settings.production",
        "False",
        "['agents.example.com']",
    ]


@pytest.mark.parametrize("missing", list(REQUIRED))
def test_production_settings_name_each_missing_variable(missing: str) -> None:
    present = {k: v for k, v in REQUIRED.items() if k != missing}
    result = _python(
        "import django; django.setup()",
        DJANGO_SETTINGS_MODULE="config.settings.production",
        **present,
    )
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured")
    assert missing in last_line
    assert not any(other in last_line for other in present)


def test_production_settings_never_run_with_debug() -> None:
    result = _python(
        "import django; django.setup()",
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_DEBUG="true",
        **REQUIRED,
    )
    assert result.returncode != 0
    assert "DJANGO_DEBUG" in result.stderr.strip().splitlines()[-1]
