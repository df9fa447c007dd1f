from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.test import Client

from core.logging import RequestIdFilter
from core.request_context import request_id_var

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_touching_services(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_database_and_redis(client: Client) -> None:
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"]
    assert body["checks"]["redis"]["ok"]


def test_readyz_fails_with_503_when_redis_is_unreachable(client: Client, settings) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_every_response_carries_a_request_id(client: Client) -> None:
    generated = client.get("/healthz")["X-Request-ID"]
    assert len(generated) == 32
    assert client.get("/healthz", HTTP_X_REQUEST_ID="trace-1234abcd")["X-Request-ID"] == (
        "trace-1234abcd"
    )
    # A hostile id (header injection, absurd length) is replaced, not echoed.
    assert client.get("/healthz", HTTP_X_REQUEST_ID="x" * 500)["X-Request-ID"] != "x" * 500


def test_json_log_lines_carry_the_request_id() -> None:
    config = settings.LOGGING["formatters"]["json"]
    from pythonjsonlogger.json import JsonFormatter

    formatter = JsonFormatter(config["fmt"], rename_fields=config["rename_fields"])
    record = logging.LogRecord("audit", logging.INFO, __file__, 1, "member invited", None, None)
    token = request_id_var.set("req-42abcdef")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(formatter.format(record))
    assert line["request_id"] == "req-42abcdef"
    assert line["message"] == "member invited"
    assert line["level"] == "INFO"


def test_production_settings_pass_the_deploy_checklist() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "agents.example.com",
        "EMAIL_URL": "smtp+tls://mailer:secret@smtp.example.com:587",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_SECRET_KEY")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_ALLOWED_HOSTS="agents.example.com",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_settings_refuse_console_email() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("EMAIL_URL", "EMAIL_BACKEND")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="agents.example.com",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "EMAIL_URL" in result.stderr
