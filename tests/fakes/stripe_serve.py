"""The Stripe fake as a long-lived process: the embedded test mode of `scripts/dev`.

    python -m tests.fakes.stripe_serve --port 8111 --api-key sk_test_EmulatorLocalDevelopmentOnly \\
        --state .local/stripe-emulator.json

It serves `FakeStripe` (tests/fakes/stripe_api.py) on 127.0.0.1:PORT until SIGTERM or Ctrl-C,
with the hosted checkout, portal and invoice pages a person clicks through. Its state (every
object, event and meter event, the connected accounts' balances, tiered prices' tiers and the
idempotency keys) is written to `--state` after each change and read back at
start, so customers, subscriptions and invoices live as long as the local database next to
it. It accepts only a `sk_test_` key and refuses to start under the production settings
module: it exists so that nobody needs a Stripe account to try billing, never to take money.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.fakes.stripe_api import TEST_MODE_BANNER, FakeStripe

NON_PRODUCTION_SETTINGS = ("config.settings.base", "config.settings.test", "bench.settings")


class EmulatedStripe(FakeStripe):
    """FakeStripe whose state survives a restart (a JSON file, written after each change)."""

    def __init__(self, *, port: int, state: Path | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind_port = port
        self.state_path = state
        if state is not None and state.is_file():
            saved = json.loads(state.read_text())
            self.objects.update(saved["objects"])
            self.events.extend(saved["events"])
            self.meter_events.extend(saved["meter_events"])
            self.clock_offset = saved["clock_offset"]
            # connected accounts' balances (a reversal after a restart still finds the money),
            # tiered prices' tiers, and the idempotency keys Stripe keeps for 24 hours
            self.connected_balances.update(saved.get("connected_balances", {}))
            self._tiers.update(
                {
                    price: [(up_to, Decimal(unit), flat) for up_to, unit, flat in tiers]
                    for price, tiers in saved.get("tiers", {}).items()
                }
            )
            self._idempotent.update(
                {
                    (api_key, key): (fingerprint, status, body.encode())
                    for api_key, key, fingerprint, status, body in saved.get("idempotency", [])
                }
            )
            # invoice numbers and the like go on from where they were
            self._ids = itertools.count(len(self.objects) + len(self.meter_events) + 1)

    def dispatch(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        super().dispatch(handler, raw)
        if handler.command != "GET":
            self.save()

    def save(self) -> None:
        if self.state_path is None:
            return
        with self._state:
            text = json.dumps(
                {
                    "objects": self.objects,
                    "events": self.events,
                    "meter_events": self.meter_events,
                    "clock_offset": self.clock_offset,
                    "connected_balances": self.connected_balances,
                    "tiers": {
                        price: [[up_to, str(unit), flat] for up_to, unit, flat in tiers]
                        for price, tiers in self._tiers.items()
                    },
                    "idempotency": [
                        [api_key, key, fingerprint, status, body.decode()]
                        for (api_key, key), (fingerprint, status, body) in self._idempotent.items()
                    ],
                }
            )
        temporary = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}")
        temporary.write_text(text)
        os.replace(temporary, self.state_path)


def refusal(api_key: str, settings_module: str) -> str | None:
    """Why the emulator must not start, or None. It runs under the development and test
    settings only: an unset module means production (config/asgi.py)."""
    if settings_module not in NON_PRODUCTION_SETTINGS:
        return (
            "The Stripe emulator runs only under development or test settings "
            f"(DJANGO_SETTINGS_MODULE={settings_module or 'unset, i.e. production'}): it takes no "
            "money. Configure a Stripe account instead (STRIPE_TEST_SECRET_KEY or "
            "STRIPE_LIVE_SECRET_KEY)."
        )
    if not api_key.startswith("sk_test_"):
        return f"The Stripe emulator accepts a test key only (sk_test_…), not {api_key[:8]}…"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.stripe_serve")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", required=True, help="the only key accepted (sk_test_…)")
    parser.add_argument("--state", type=Path, default=None, help="JSON file kept between starts")
    parser.add_argument("--webhook-url", default=None, help="post every event here, signed")
    parser.add_argument("--webhook-secret", default="whsec_emulator")
    args = parser.parse_args(argv)
    problem = refusal(args.api_key, os.environ.get("DJANGO_SETTINGS_MODULE", ""))
    if problem:
        print(problem, file=sys.stderr)  # noqa: T201 (a launcher's refusal)
        return 2
    emulator = EmulatedStripe(
        port=args.port,
        state=args.state,
        api_key=args.api_key,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
    )
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    with emulator:
        print(  # noqa: T201 (a launcher's status)
            f"• Stripe emulator ({TEST_MODE_BANNER}) on {emulator.url}", file=sys.stderr
        )
        stopping.wait()
    emulator.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
