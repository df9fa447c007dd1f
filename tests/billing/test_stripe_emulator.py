"""The embedded billing test mode of `scripts/dev`: with no Stripe key, `manage.py dev` runs the
Stripe emulator (tests/fakes/stripe_serve.py) as a supervised process and points the platform
at it. It refuses production settings; the real stripe SDK reaches it through STRIPE_API_BASE;
its state survives a restart; its hosted checkout page pays and redirects, and its portal
cancels."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.demo import seed_demo_plans
from billing.models import Plan
from billing.stripe_client import stripe_client
from billing.stripe_sync import plans_sync
from config.management.commands.dev import (
    EMULATOR_KEY,
    stripe_emulator,
    stripe_emulator_refusal,
    wait_until_serving,
)
from core.supervise import Child
from tests.fakes.stripe_api import TEST_MODE_BANNER


def test_dev_refuses_billing_test_mode_under_production_settings(settings: Any) -> None:
    settings.STRIPE_TEST_SECRET_KEY = settings.STRIPE_LIVE_SECRET_KEY = ""
    settings.DEBUG = False
    with pytest.raises(CommandError, match="runs only with development settings"):
        call_command("dev")  # refused before anything starts

    settings.DEBUG = True
    settings.SETTINGS_MODULE = "config.settings.production"
    problem = stripe_emulator_refusal()
    assert problem is not None
    assert "config.settings.production" in problem
    assert "STRIPE_TEST_SECRET_KEY" in problem
    assert "--no-billing-emulator" in problem

    settings.SETTINGS_MODULE = "config.settings.base"
    assert stripe_emulator_refusal() is None


def _serve(*arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.fakes.stripe_serve", "--port", "0", *arguments],
        cwd=django_settings.BASE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_emulator_itself_refuses_production_settings_and_live_keys() -> None:
    production = _serve(
        "--api-key", EMULATOR_KEY, DJANGO_SETTINGS_MODULE="config.settings.production"
    )
    assert production.returncode == 2
    assert "runs only under development or test settings" in production.stderr
    assert "DJANGO_SETTINGS_MODULE=config.settings.production" in production.stderr
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    unset = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fakes.stripe_serve",
            "--port",
            "0",
            "--api-key",
            EMULATOR_KEY,
        ],
        cwd=django_settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unset.returncode == 2
    assert "unset, i.e. production" in unset.stderr

    live = _serve("--api-key", "sk_live_123", DJANGO_SETTINGS_MODULE="config.settings.base")
    assert live.returncode == 2
    assert "accepts a test key only" in live.stderr


@pytest.fixture
def emulator(settings: Any, tmp_path: Path) -> Iterator[tuple[Child, str]]:
    """The emulator as `manage.py dev` starts it, and the platform's settings pointed at it."""
    with stripe_emulator(tmp_path) as (child, env):
        child.process = child.start()  # as the supervisor does: the process already serving
        settings.STRIPE_TEST_SECRET_KEY = env["STRIPE_TEST_SECRET_KEY"]
        settings.STRIPE_LIVE_MODE = False
        settings.STRIPE_API_BASE = env["STRIPE_API_BASE"]
        yield child, env["STRIPE_API_BASE"]


def _http(method: str, url: str, body: str = "") -> http.client.HTTPResponse:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    connection.request(method, parts.path, body=body or None, headers=headers)
    return connection.getresponse()


@pytest.mark.django_db
def test_the_sdk_reaches_the_emulator_through_the_configured_base_and_state_survives_a_restart(
    emulator: tuple[Child, str], tmp_path: Path
) -> None:
    child, base = emulator
    seed_demo_plans()

    report = plans_sync(stripe_client())

    assert "plan_pro_month" in report.created
    pro = Plan.objects.get(key="pro")
    assert stripe_client().v1.products.retrieve(pro.stripe_product_id).name == "Pro"
    assert (tmp_path / "stripe-emulator.json").is_file()

    # The supervisor restarts an emulator that exited: same port, same objects.
    assert child.process is not None
    child.process.terminate()
    child.process.wait(timeout=10)
    child.process = child.start()
    wait_until_serving(int(urlsplit(base).port or 0), child.process)
    assert stripe_client().v1.products.retrieve(pro.stripe_product_id).name == "Pro"
    again = plans_sync(stripe_client())
    assert again.created == []


@pytest.mark.django_db
def test_the_hosted_checkout_page_pays_and_redirects_and_the_portal_cancels(
    emulator: tuple[Child, str],
) -> None:
    seed_demo_plans()
    plans_sync(stripe_client())
    client = stripe_client()
    price = client.v1.prices.list(params={"lookup_keys": ["plan_pro_month"]}).data[0]
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer_email": "owner@demo.local",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "http://localhost:8000/w/demo/billing/?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "http://localhost:8000/w/demo/billing/",
        }
    )
    assert session.url is not None

    page = _http("GET", session.url)
    text = page.read().decode()
    assert page.status == 200
    assert TEST_MODE_BANNER in text
    assert "Pro" in text
    assert "$29.00" in text
    assert 'href="http://localhost:8000/w/demo/billing/">Cancel' in text
    action = text.split('<form method="post" action="')[1].split('"')[0]

    paid = _http("POST", urlsplit(session.url)._replace(path=action).geturl())

    assert paid.status == 303
    assert paid.getheader("Location") == (
        f"http://localhost:8000/w/demo/billing/?session={session.id}"
    )
    completed = client.v1.checkout.sessions.retrieve(session.id)
    assert completed.status == "complete"
    assert completed.subscription is not None
    subscription = client.v1.subscriptions.retrieve(str(completed.subscription))
    assert subscription.status == "active"

    # The portal lists the subscription and its invoice, and cancels at the period's end.
    portal = client.v1.billing_portal.sessions.create(
        params={"customer": str(completed.customer), "return_url": "http://localhost:8000/"}
    )
    portal_page = _http("GET", portal.url).read().decode()
    assert TEST_MODE_BANNER in portal_page
    assert "Cancel subscription" in portal_page
    invoice_link = portal_page.split('href="/test/invoice/')[1].split('"')[0]
    invoice_page = _http("GET", f"{emulator[1]}/test/invoice/{invoice_link}").read().decode()
    assert "$29.00" in invoice_page
    cancel = _http(
        "POST", f"{emulator[1]}/test/portal/{portal.id}/subscriptions/{subscription.id}/cancel"
    )
    assert cancel.status == 303
    assert client.v1.subscriptions.retrieve(subscription.id).cancel_at_period_end is True
    assert "cancels when this period ends" in _http("GET", portal.url).read().decode()
