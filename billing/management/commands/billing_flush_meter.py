"""Send the pending meter outbox rows to Stripe now (what the periodic task does every 30 s).

manage.py billing_flush_meter [--batch-size N]
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.meter import meter_flush
from billing.stripe_client import stripe_client
from core.exceptions import ServiceUnavailable


class Command(BaseCommand):
    help = "Send the due meter outbox rows to Stripe Billing Meters."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=None, help="Rows per batch.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError(f"--batch-size must be at least 1 (got {options['batch_size']}).")
        try:
            client = stripe_client()
        except ServiceUnavailable as exc:
            raise CommandError(exc.message) from exc
        report = meter_flush(client, batch_size=options["batch_size"])
        for error in report.errors:
            self.stderr.write(error)
        self.stdout.write(
            f"{report.sent} sent, {report.retrying} to retry, {report.failed} failed."
        )
