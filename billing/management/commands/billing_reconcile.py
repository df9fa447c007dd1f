"""Compare Stripe's AI-spend meter totals with our ledger, per workspace, for one month.

manage.py billing_reconcile [--period YYYY-MM] [--workspace slug]

Exit status 1 when any workspace differs (docs/billing.md, "Reconciliation").
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import stripe
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from billing.meter import ReconcileLine, period_bounds, reconcile
from billing.stripe_client import stripe_client
from core.exceptions import ApplicationError
from core.formatting import cost_text


def _usd(micro: int) -> str:
    return cost_text(Decimal(micro) / 1_000_000)


class Command(BaseCommand):
    help = "Compare Stripe's meter event summaries with the ledger (AI spend) for a month."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", help="The month, YYYY-MM (default: this month, UTC).")
        parser.add_argument("--workspace", help="Only this workspace (its slug).")

    def handle(self, *args: Any, **options: Any) -> None:
        period = options["period"] or f"{timezone.now():%Y-%m}"
        try:
            start, end = period_bounds(period)
            lines = reconcile(
                stripe_client(),
                start=start,
                end=end,
                workspace_slug=options["workspace"],
                progress=self._progress,
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        except stripe.StripeError as exc:
            raise CommandError(f"Stripe refused: {exc.user_message or exc}") from exc
        self._table(period, lines)
        differing = [line for line in lines if line.difference]
        if differing:
            raise CommandError(
                f"{len(differing)} of {len(lines)} workspace(s) differ for {period}; "
                "see docs/billing.md, Reconciliation.",
                returncode=1,
            )
        self.stdout.write(self.style.SUCCESS(f"{len(lines)} workspace(s), no difference."))

    def _progress(self, done: int, total: int) -> None:
        if total > 1 and (done % 25 == 0 or done == total):
            self.stderr.write(f"checked {done} of {total} workspaces…")

    def _table(self, period: str, lines: list[ReconcileLine]) -> None:
        header = ("workspace", "customer", "ours", "stripe", "difference", "not sent yet")
        rows = [
            (
                line.workspace,
                line.customer,
                _usd(line.ours),
                _usd(line.stripe),
                _usd(line.difference),
                _usd(line.unsent),
            )
            for line in lines
        ]
        widths = [
            max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)
        ]
        self.stdout.write(f"AI spend metered for {period} (UTC), model cost in US dollars:")
        for row in (header, *rows):
            self.stdout.write(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            )
