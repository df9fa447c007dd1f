from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import schema_context

from tenants.models import Workspace
from tenants.tasks import inventory


class Command(BaseCommand):
    help = (
        "Send a task to the Celery workers from a workspace and print what the worker saw: "
        "the schema it ran in and that workspace's row counts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True, help="workspace slug")
        parser.add_argument("--timeout", type=float, default=15.0, help="seconds to wait")
        parser.add_argument("--queue", default=None, help="queue (default: the default queue)")

    def handle(self, *args: Any, **options: Any) -> None:
        workspace = Workspace.objects.filter(slug=options["workspace"], is_template=False).first()
        if workspace is None:
            raise CommandError(f"--workspace: no workspace with slug '{options['workspace']}'.")
        with schema_context(workspace.schema_name):
            result = inventory.apply_async(queue=options["queue"])
        try:
            report = result.get(timeout=options["timeout"])
        except Exception as exc:
            raise CommandError(
                f"No answer from a worker within {options['timeout']} s ({exc.__class__.__name__})."
                " Is `celery -A config worker` running against the same REDIS_URL?"
            ) from exc
        if report["schema"] != workspace.schema_name:
            raise CommandError(
                f"The task ran in schema {report['schema']!r}, expected {workspace.schema_name!r}."
            )
        self.stdout.write(json.dumps(report, indent=2, sort_keys=True))
