from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from tenants.provisioning import template_workspace


class Command(BaseCommand):
    help = (
        "Create (once) and migrate the template schema new workspaces are cloned from. "
        "`migrate_schemas` keeps it current afterwards like any workspace."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        template = template_workspace()
        if options["verbosity"]:
            self.stdout.write(f"Template schema ready: {template.schema_name}")
