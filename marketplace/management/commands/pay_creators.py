"""Run the creators' money tasks now, optionally as of a later moment (test mode: advance the
clock past the hold to see a sale become available and paid). The Payouts admin's "Pay
creators now" does the same from the back-office.

    manage.py pay_creators                 # what the hourly beat tasks do
    manage.py pay_creators --days-ahead 8  # as if 8 days had passed (refused in live mode)
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.exceptions import ApplicationError
from marketplace.payouts import creators_pay_now


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
        try:
            report = creators_pay_now(days_ahead=options["days_ahead"])
        except ApplicationError as exc:
            problem = exc.fields.get("days_ahead")
            raise CommandError(f"--days-ahead: {problem[0]}" if problem else exc.message) from exc
        self.stdout.write(str(report))
