"""`import_catalog`: read, validate every item, then write each valid one in its own transaction."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.db import transaction

from marketplace.catalog_import.items import (
    CATALOG_DIR,
    CATEGORIES_FILE,
    CatalogItem,
    CategorySpec,
    ImportReport,
    ItemError,
)
from marketplace.catalog_import.reading import read_categories, read_csv, read_folder
from marketplace.catalog_import.validation import validate_item
from marketplace.catalog_import.writing import (
    index_listings,
    outcome_preview,
    platform_publisher,
    upsert_categories,
    write_item,
)
from marketplace.models import Category, Listing

Progress = Callable[[int, int], object]


def import_catalog(
    path: Path | str | None = None,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a catalogue folder (recursively: YAML/JSON files, `categories.yaml` at its top)
    or a CSV file (categories from a `categories.yaml` beside it, or already in the database).
    `progress(done, total)` is called after each item. Never raises on bad input: every
    problem is in `report.errors`."""
    root = Path(path) if path is not None else CATALOG_DIR
    report = ImportReport(dry_run=dry_run)
    if root.is_dir():
        category_specs, errors = read_categories(root / CATEGORIES_FILE)
        items, read_errors = read_folder(root)
    elif root.is_file() and root.suffix == ".csv":
        category_specs, errors = read_categories(root.parent / CATEGORIES_FILE)
        items, read_errors = read_csv(root)
    else:
        report.errors.append(ItemError(str(root), "path", "is neither a folder nor a .csv file"))
        report.failed.append(str(root))
        return report
    known = {spec.slug for spec in category_specs} | set(
        Category.objects.values_list("slug", flat=True)
    )
    valid, item_errors = _valid_items(items, known)
    report.errors = errors + read_errors + item_errors
    report.failed = list(dict.fromkeys(e.source for e in report.errors))
    total = len(valid) + len(report.failed)
    done = len(report.failed)
    if progress is not None and done:
        progress(done, total)
    if dry_run:
        for item in valid:
            getattr(report, outcome_preview(item)).append(item.slug)
            done += 1
            if progress is not None:
                progress(done, total)
        report.categories = len(category_specs)
        return report
    _write(valid, category_specs, report, progress=progress, done=done, total=total)
    return report


def _valid_items(
    items: list[CatalogItem], category_slugs: set[str]
) -> tuple[list[CatalogItem], list[ItemError]]:
    """(the items that can be imported, the problems of the others); a slug used twice is a
    problem of its second item."""
    seen: dict[str, str] = {}
    valid: list[CatalogItem] = []
    errors: list[ItemError] = []
    for item in items:
        problems = validate_item(item, category_slugs=category_slugs)
        if item.slug in seen:
            problems.append(
                ItemError(item.source, "slug", f"{item.slug!r} is also used by {seen[item.slug]}")
            )
        elif item.slug:
            seen[item.slug] = item.source
        if problems:
            errors += problems
        else:
            valid.append(item)
    return valid, errors


def _write(
    valid: list[CatalogItem],
    category_specs: list[CategorySpec],
    report: ImportReport,
    *,
    progress: Progress | None,
    done: int,
    total: int,
) -> None:
    with transaction.atomic():
        report.categories = upsert_categories(category_specs)
        publisher = platform_publisher()
    categories = {c.slug: c for c in Category.objects.all()}
    changed: list[Listing] = []
    for item in valid:
        with transaction.atomic():
            outcome, listing = write_item(item, publisher=publisher, categories=categories)
        getattr(report, outcome).append(item.slug)
        if listing is not None:
            changed.append(listing)
        done += 1
        if progress is not None:
            progress(done, total)
    index_listings(changed)
