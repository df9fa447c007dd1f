"""Register this platform's two Stripe webhook endpoints (the platform's events, and the Connect
one for creators' connected accounts; dj-stripe's view). Safe to run again.

manage.py billing_webhook_endpoint --url https://agents.example.com
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.webhooks import webhook_endpoint_ensure
from core.exceptions import ServiceUnavailable


class Command(BaseCommand):
    help = "Create (once) the two Stripe webhook endpoints (platform, Connect) posting here."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            required=True,
            help="The platform's public base URL (scheme and host), e.g. https://agents.example.com",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        url: str = options["url"]
        if not url.startswith(("https://", "http://")):
            raise CommandError(
                "--url must start with https:// (or http:// on a development machine; "
                f"got {url!r})."
            )
        try:
            reports = webhook_endpoint_ensure(base_url=url)
        except ServiceUnavailable as exc:
            raise CommandError(exc.message) from exc
        for report in reports:
            for endpoint_id in report.removed:
                self.stdout.write(
                    f"deleted  {endpoint_id} (at our URL, but its secret was not stored)"
                )
            verb = "created" if report.created else "updated" if report.updated else "kept   "
            scope = report.endpoint.metadata.get("endpoint", "platform")
            self.stdout.write(f"{verb}  {report.endpoint.id} {report.endpoint.url} ({scope})")
        self.stdout.write(
            self.style.SUCCESS(
                "Stripe posts the platform's events, and those of creators' connected "
                "accounts, to those URLs."
            )
        )
