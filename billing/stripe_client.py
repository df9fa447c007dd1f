"""The platform's Stripe account, through the official `stripe` SDK. Billing is off unless a
secret key is configured (STRIPE_TEST_SECRET_KEY, or STRIPE_LIVE_SECRET_KEY with
STRIPE_LIVE_MODE); `STRIPE_API_BASE` points the SDK at Stripe or at the loopback fake."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import stripe
from django.conf import settings

from core.exceptions import ServiceUnavailable


def secret_key_setting() -> str:
    """The setting that holds the key for the configured mode (named in "billing is off")."""
    return "STRIPE_LIVE_SECRET_KEY" if settings.STRIPE_LIVE_MODE else "STRIPE_TEST_SECRET_KEY"


def secret_key() -> str:
    return str(
        settings.STRIPE_LIVE_SECRET_KEY
        if settings.STRIPE_LIVE_MODE
        else settings.STRIPE_TEST_SECRET_KEY
    )


def stripe_mode() -> Literal["off", "test", "live"]:
    """ "off" (no secret key), "test" (test mode, or a test key: the key decides where the money
    goes) or "live"."""
    key = secret_key()
    if not key:
        return "off"
    if not settings.STRIPE_LIVE_MODE or key.startswith(("sk_test_", "rk_test_")):
        return "test"
    return "live"


def billing_mode() -> str:
    """One line saying whether billing is on and in which Stripe mode (logged when the ASGI
    server starts; `manage.py dev` says the same with the emulator; the Billing page shows
    `stripe_mode()` as a banner)."""
    mode = stripe_mode()
    if mode == "off":
        return (
            "Billing is off: no plan limits, no checkout "
            f"(set {secret_key_setting()} to turn it on)."
        )
    quotas = "plan limits on" if settings.BILLING_QUOTAS else "plan limits off (BILLING_QUOTAS)"
    if mode == "live":
        return f"Billing is on: Stripe LIVE mode, real money; {quotas}."
    return f"Billing is on: Stripe test mode, no real money; {quotas}."


def stripe_client() -> stripe.StripeClient:
    key = secret_key()
    if not key:
        raise ServiceUnavailable(
            f"Billing is off: set {secret_key_setting()} to connect a Stripe account."
        )
    return stripe.StripeClient(
        key, base_addresses={"api": settings.STRIPE_API_BASE}, max_network_retries=2
    )


@contextmanager
def stripe_errors(action: str) -> Iterator[None]:
    """Stripe's failures as our errors: unreachable (or answering 5xx) is a 503 saying so,
    never a 500; anything else Stripe refused is a 503 naming what it said (the request was
    ours, not the user's, to get right)."""
    try:
        yield
    except stripe.APIConnectionError as exc:
        raise ServiceUnavailable(
            f"Stripe could not be reached to {action}; nothing was charged. Try again shortly."
        ) from exc
    except stripe.StripeError as exc:
        raise ServiceUnavailable(
            f"Stripe refused to {action}: {exc.user_message or exc}. Try again shortly, or "
            "tell the platform's operators if it keeps happening."
        ) from exc


def sdk_configure() -> None:
    """Point the `stripe` module's global client at `STRIPE_API_BASE`: dj-stripe calls Stripe
    through it (re-reading webhook objects), not through `stripe_client()`. Called on start and
    whenever the setting changes (tests point it at their fake)."""
    stripe.api_base = settings.STRIPE_API_BASE
