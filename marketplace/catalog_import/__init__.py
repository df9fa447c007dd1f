"""Import the platform's own catalogue of listings (marketplace/catalog/README.md has the format).

    report = import_catalog(CATALOG_DIR)                  # a folder of YAML/JSON files
    report = import_catalog(Path("listings.csv"), dry_run=True)
    report.created, report.updated, report.unchanged      # slugs
    report.errors                                         # [ItemError(source, field, message)]

Idempotent by slug. A new slug becomes a listing of the platform publisher ("agent-market",
no workspace) with an approved version 1. An existing listing whose definition, example inputs
or required tools changed gets version number+1, approved and made current; one whose only
metadata (title, summary, tags, …) changed is updated in place; anything else is left alone.

Every item is validated in full before anything is written, and written in its own transaction:
a bad item is reported with its file (or CSV row) and field while the good ones are imported. A
dry run validates the same way and writes nothing at all (not even categories).

Modules: `items` (fields, ItemError, ImportReport), `reading` (folder, CSV, categories),
`agent_spec` and `validation` (every check, before any write), `writing` (one item's
transaction, the search index), `importer` (`import_catalog`, which runs them in that order).
"""

from marketplace.catalog_import.agent_spec import catalog_tools
from marketplace.catalog_import.importer import import_catalog
from marketplace.catalog_import.items import CATALOG_DIR, ImportReport, ItemError
from marketplace.catalog_import.validation import workflow_structure_issues

__all__ = [
    "CATALOG_DIR",
    "ImportReport",
    "ItemError",
    "catalog_tools",
    "import_catalog",
    "workflow_structure_issues",
]
