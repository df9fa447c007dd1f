from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from tenants.migrating import MigrationFailed, migrate_workspaces


class Command(BaseCommand):
    help = (
        "Bring every workspace schema up to date, deciding once for all of them: the template "
        "first, then only the schemas that are behind, with the SQL worked out once and applied "
        "in parallel, each schema in its own transaction. Safe to run again after a failure: it "
        "continues with whatever is still behind. Run `migrate_schemas --shared` before it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--workers",
            type=int,
            default=2,
            help="schemas migrated at once (each uses one database connection); default 2",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["workers"] < 1:
            raise CommandError("--workers: use at least 1.")
        quiet = not options["verbosity"]
        with tqdm(desc="workspaces", unit="schema", disable=quiet, file=self.stderr) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            try:
                report = migrate_workspaces(workers=options["workers"], progress=progress)
            except MigrationFailed as exc:
                raise CommandError(
                    f"{exc} — {exc.done} other schemas were migrated before it and stay "
                    f"migrated; {exc.schema} was rolled back. Fix the cause and run "
                    "migrate_workspaces again: it continues with the schemas still behind."
                ) from exc
        if quiet:
            return
        if not report.migrated:
            self.stdout.write(
                f"All {report.schemas} workspace schemas are up to date ({report.seconds:.1f} s)."
            )
            return
        how = f" one schema at a time ({report.fallback})" if report.fallback else ""
        self.stdout.write(
            f"Migrated {report.migrated} of {report.schemas} workspace schemas{how} in "
            f"{report.seconds:.1f} s: {', '.join(report.applied)}. "
            f"{report.up_to_date} were already up to date."
        )
