"""The demo's paid listing, in Stripe test mode (the emulator `manage.py dev` starts): run by
`manage.py dev` after the plans are mirrored, in a process pointed at the emulator. Safe to run
again. Without Stripe test mode it says so and changes nothing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from config.demo import DEMO_USERS
from marketplace.demo import seed_demo_shop


class Command(BaseCommand):
    help = "Add the demo's paid listing, its creator and one example sale (Stripe test mode)."

    def handle(self, *args: Any, **options: Any) -> None:
        emails = {label: email for label, email, _ in DEMO_USERS}
        users = {u.email: u for u in User.objects.filter(email__in=emails.values())}
        if emails["owner"] not in users or emails["staff"] not in users:
            raise CommandError("Run manage.py seed_demo first: the demo's users are missing.")
        shop = seed_demo_shop(owner=users[emails["owner"]], staff=users[emails["staff"]])
        if shop is None:
            self.stdout.write("Billing is not in Stripe test mode: no paid demo listing.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Paid demo listing: /marketplace/l/{shop.listing.slug}/ (by "
                f"{shop.creator.name}; its Earnings page: /w/{shop.creator.slug}/marketplace/"
                f"earnings/; an example sale {'recorded' if shop.sold else 'not recorded'})"
            )
        )
