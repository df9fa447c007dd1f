"""Import the platform's catalogue of listings (marketplace/catalog/README.md).

    manage.py import_catalog                         # the shipped marketplace/catalog/
    manage.py import_catalog path/to/folder --dry-run
    manage.py import_catalog listings.csv

Idempotent by slug; each listing is written in its own transaction, so a bad file is reported
(with its field) while the good ones are imported. Exits with status 1 when any item failed.
`--dry-run` checks everything and writes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import get_public_schema_name, schema_context
from tqdm import tqdm

from marketplace.catalog_import import CATALOG_DIR, import_catalog


class Command(BaseCommand):
    help = "Import marketplace listings from a catalogue folder (YAML/JSON) or a CSV file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "path", nargs="?", help=f"a folder or a .csv file (default: {CATALOG_DIR})"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="check every item and report; write nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"]) if options["path"] else CATALOG_DIR
        if not path.exists():
            raise CommandError(f"{path}: no such file or folder.")
        dry_run = options["dry_run"]
        with (
            schema_context(get_public_schema_name()),
            tqdm(desc=path.name, unit="listing", file=self.stderr) as bar,
        ):

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            report = import_catalog(path, dry_run=dry_run, progress=progress)
        for error in report.errors:
            self.stderr.write(str(error))
        verb = "Dry run, would be" if dry_run else "Catalogue"
        summary = (
            f"{verb}: {len(report.created)} created, {len(report.updated)} updated, "
            f"{len(report.unchanged)} unchanged, {len(report.failed)} failed "
            f"({report.categories} categories)."
        )
        if dry_run:
            summary += " Nothing was written."
        if report.failed:
            self.stdout.write(self.style.WARNING(summary))
            raise CommandError(f"{len(report.failed)} item(s) failed; see the errors above.")
        self.stdout.write(self.style.SUCCESS(summary))
