from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand

from config.demo import seed_demo


class Command(BaseCommand):
    help = "Create the demo workspace and its users (idempotent: safe to run again)."

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("DEMO_PASSWORD", "demo-password-2026")
        result = seed_demo(password=password)
        self.stdout.write(
            self.style.SUCCESS(
                "Demo ready" + (" (already there)" if not result.created else "") + ":"
            )
        )
        self.stdout.write(f"  workspace  /w/{result.workspace.slug}/  ({result.workspace.name})")
        for label, email in result.logins:
            self.stdout.write(f"  {label:<7}    {email} / {password}")
