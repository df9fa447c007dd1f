"""Run the creators' money tasks now, optionally as of a later moment (test mode: advance the
clock past the hold to see a sale become available and paid).

    manage.py pay_creators                 # what the hourly beat tasks do
    manage.py pay_creators --days-ahead 8  # as if 8 days had passed (refused in live mode)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from billing.stripe_client import stripe_mode
from marketplace.earnings import earnings_release
from marketplace.payouts import payouts_run


class Command(BaseCommand):
    help = "Release earnings whose hold ended and pay creators' available balances."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days-ahead",
            type=int,
            default=0,
            help="act as if this many days had passed (Stripe test mode only)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days_ahead"]
        mode = stripe_mode()
        if mode == "off":
            raise CommandError("Billing is off: there is no Stripe account to pay creators from.")
        if days and mode != "test":
            raise CommandError("--days-ahead: only in Stripe test mode (real money is not early).")
        now = timezone.now() + timedelta(days=days)
        released = earnings_release(now=now)
        report = payouts_run(now=now)
        self.stdout.write(
            f"as of {now:%Y-%m-%d %H:%M} UTC: {released} sale(s) became available; "
            f"{report.booked} payout(s) booked, {report.sent} sent, {report.failed} failed"
        )
