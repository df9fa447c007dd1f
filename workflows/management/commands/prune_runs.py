"""Delete finished workflow runs older than an age, in every workspace or one.

    manage.py prune_runs --older-than 30d
    manage.py prune_runs --older-than 12h --workspace acme --dry-run

Queued, running and waiting runs are never touched. Deletes in batches (each in its own
transaction) with a progress bar; step runs, recorded calls and webhook deliveries go too.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from core.exceptions import ValidationFailed
from tenants.schemas import each_live_workspace, live_workspaces
from workflows.retention import BATCH_SIZE, parse_age, runs_prune


class Command(BaseCommand):
    help = "Delete finished workflow runs older than --older-than (e.g. 30d, 12h)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", required=True, help="age of the runs to delete: Nd or Nh (30d, 12h)"
        )
        parser.add_argument("--workspace", help="workspace slug (default: every workspace)")
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
        )
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="runs per batch")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            age = parse_age(options["older_than"])
        except ValidationFailed as exc:
            raise CommandError(f"--older-than: {exc.message}") from exc
        if options["batch_size"] < 1:
            raise CommandError("--batch-size: must be at least 1.")
        workspaces = live_workspaces()
        slug = options["workspace"]
        if slug:
            workspaces = workspaces.filter(slug=slug)
            if not workspaces.exists():
                raise CommandError(f"--workspace: no workspace with slug '{slug}'.")
        now = timezone.now()
        dry_run = options["dry_run"]
        total = 0
        for workspace in each_live_workspace(workspaces.order_by("slug")):
            count = runs_prune(older_than=age, now=now, dry_run=True)
            if dry_run:
                self.stdout.write(f"{workspace.slug}: {count} run(s) would be deleted.")
                total += count
                continue
            with tqdm(
                total=count, desc=workspace.slug, unit="run", file=self.stderr, disable=not count
            ) as bar:
                deleted = runs_prune(
                    older_than=age,
                    now=now,
                    batch_size=options["batch_size"],
                    on_progress=bar.update,
                )
            self.stdout.write(f"{workspace.slug}: {deleted} run(s) deleted.")
            total += deleted
        verb = "would be deleted" if dry_run else "deleted"
        self.stdout.write(
            self.style.SUCCESS(
                f"{total} finished run(s) older than {options['older_than']} {verb}."
            )
        )
