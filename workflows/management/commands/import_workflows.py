"""Create workflows from a CSV file, one row per step (docs/workflow-templates.md).

    manage.py import_workflows flows.csv --workspace acme
    manage.py import_workflows flows.csv --workspace acme --dry-run
    manage.py import_workflows flows.csv --workspace acme --user builder@acme.example

All or nothing: with any problem in any row, nothing is written; every problem is listed with
its row and column and the command exits with status 1. `--dry-run` checks everything an
import would and writes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import schema_context
from tqdm import tqdm

from core.exceptions import PermissionDenied
from tenants.models import Membership, Role, Workspace
from tenants.permissions import Access
from tenants.schemas import live_workspaces
from tenants.selectors import access_for_membership
from workflows.csv_import import CsvFormatError, csv_import, csv_parse


class Command(BaseCommand):
    help = "Create workflows from a CSV file (one row per step); all or nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the CSV file (UTF-8; header row first)")
        parser.add_argument(
            "--workspace", help="workspace slug (may be left out when there is only one)"
        )
        parser.add_argument(
            "--user", help="email of the member the workflows are created as (default: an owner)"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="check every row and report; write nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path}: no such file.")
        workspace = self._workspace(options["workspace"])
        try:
            parsed = csv_parse(path.read_bytes())
        except CsvFormatError as exc:
            raise CommandError(f"{path.name}: {exc.message}") from exc
        access = self._member_access(workspace, options["user"])
        dry_run = options["dry_run"]
        with (
            schema_context(workspace.schema_name),
            tqdm(
                total=len(parsed.workflows),
                desc=workspace.slug,
                unit="workflow",
                file=self.stderr,
            ) as bar,
        ):
            try:
                report = csv_import(
                    access=access,
                    parsed=parsed,
                    dry_run=dry_run,
                    source_name=path.name,
                    on_progress=bar.update,
                )
            except PermissionDenied as exc:
                raise CommandError(f"--user: {exc.message}") from exc
        for error in report.errors:
            self.stderr.write(f"{path.name}: {error}")
        if report.errors:
            raise CommandError(
                f"{len(report.errors)} problem(s) in {path.name}; nothing was imported."
            )
        for draft in report.workflows:
            self.stdout.write(f"  {draft.name}: {len(draft.steps)} step(s)")
        summary = f"{len(report.workflows)} workflow(s), {report.steps} step(s)"
        if dry_run:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Dry run: {summary} would be imported into “{workspace.slug}”; "
                    "nothing was written."
                )
            )
        else:
            self.stdout.write(self.style.SUCCESS(f"Imported {summary} into “{workspace.slug}”."))

    def _workspace(self, slug: str | None) -> Workspace:
        workspaces = live_workspaces()
        if slug:
            workspace = workspaces.filter(slug=slug).first()
            if workspace is None:
                raise CommandError(f"--workspace: no workspace with slug '{slug}'.")
            return workspace
        found = list(workspaces.order_by("slug")[:11])
        if len(found) != 1:
            slugs = ", ".join(w.slug for w in found[:10]) or "none yet"
            raise CommandError(f"--workspace: name the workspace to import into ({slugs}).")
        return found[0]

    def _member_access(self, workspace: Workspace, email: str | None) -> Access:
        memberships = Membership.objects.filter(workspace=workspace).select_related("user")
        if email:
            membership = memberships.filter(user__email__iexact=email).first()
            if membership is None:
                raise CommandError(f"--user: {email} is not a member of “{workspace.slug}”.")
        else:
            membership = memberships.filter(role=Role.OWNER).order_by("pk").first()
            if membership is None:
                raise CommandError(f"--user: “{workspace.slug}” has no owner; name a member.")
        return access_for_membership(membership=membership, user=membership.user)
