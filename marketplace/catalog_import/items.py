"""What the importer reads and reports: the catalogue's fields, an item, its errors, the report."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CATALOG_DIR = Path(__file__).parent.parent / "catalog"
CATEGORIES_FILE = "categories.yaml"
PLATFORM_PUBLISHER = {"slug": "agent-market", "display_name": "Agent Market"}
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,79}$")
CATEGORY_SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,59}$")
DEFAULT_MODEL = "default"

REQUIRED_FIELDS = ("slug", "kind", "title", "summary", "category", "definition")
OPTIONAL_FIELDS = (
    "description",
    "tags",
    "icon",
    "providers",
    "pricing",
    "price_cents",
    "changelog",
    "example_inputs",
)
FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS


@dataclass(frozen=True)
class ItemError:
    source: str  # file name relative to the imported folder, or "file.csv row 4"
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.field}: {self.message}"


@dataclass
class ImportReport:
    dry_run: bool = False
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # sources with at least one error
    errors: list[ItemError] = field(default_factory=list)
    categories: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def total(self) -> int:
        return len(self.created) + len(self.updated) + len(self.unchanged) + len(self.failed)


@dataclass
class CatalogItem:
    """One listing as a file or row gives it, normalised to plain JSON values."""

    source: str
    data: dict[str, Any]

    @property
    def slug(self) -> str:
        return str(self.data.get("slug") or "")


@dataclass(frozen=True)
class CategorySpec:
    slug: str
    name: str
    description: str
    icon: str
    position: int


class Problems:
    """The errors of one item (or CSV row) as they are found, each naming its field."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[ItemError] = []

    def add(self, field_name: str, message: str) -> None:
        self.errors.append(ItemError(self.source, field_name, message))
