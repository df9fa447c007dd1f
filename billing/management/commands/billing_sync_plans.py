"""Mirror every plan to Stripe (Products, Prices by lookup key, the AI-spend meter and the
overage Prices). Safe to run again.

manage.py billing_sync_plans
"""

from __future__ import annotations

from typing import Any

import stripe
from django.core.management.base import BaseCommand, CommandError

from billing.stripe_client import stripe_client
from billing.stripe_sync import plans_sync
from core.exceptions import ApplicationError


class Command(BaseCommand):
    help = (
        "Mirror the plans to Stripe Products and Prices (by lookup key), with the AI-spend "
        "meter and a metered overage Price per plan that allows overage."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = plans_sync(stripe_client())
        except ApplicationError as exc:  # billing off, a bad markup
            raise CommandError(exc.message) from exc
        except stripe.StripeError as exc:
            raise CommandError(f"Stripe refused the sync: {exc.user_message or exc}") from exc
        if report.meter_created:
            self.stdout.write("created  meter ai_spend_micro_usd (AI spend, micro-dollars)")
        for key in report.created:
            self.stdout.write(f"created  {key}")
        for key in report.unchanged:
            self.stdout.write(f"kept     {key}")
        for plan_key in report.skipped:
            self.stdout.write(f"skipped  {plan_key} (free: nothing to charge)")
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(report.created)} price(s) created, {len(report.unchanged)} kept."
            )
        )
