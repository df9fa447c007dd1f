"""Reading a catalogue: a folder of YAML/JSON files (one listing each), a CSV file (one listing a
row), and `categories.yaml`. Each reader returns what it could read and an error per file or
row it could not; nothing is validated beyond the file's own format here."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import yaml

from marketplace.catalog_import.items import (
    CATEGORIES_FILE,
    CATEGORY_SLUG_PATTERN,
    FIELDS,
    REQUIRED_FIELDS,
    CatalogItem,
    CategorySpec,
    ItemError,
    Problems,
)

# CSV: one row per listing; list columns are separated by | or , ; JSON columns hold JSON.
CSV_LIST_COLUMNS = ("tags", "providers")
CSV_JSON_COLUMNS = ("definition", "example_inputs")


def _plain(value: Any) -> Any:
    """Plain JSON values (what the database stores); no YAML anchors left shared."""
    return json.loads(json.dumps(value, default=str))


def _read_document(path: Path, source: str) -> tuple[Any, ItemError | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, ItemError(source, "file", f"cannot be read: {exc}")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        return None, ItemError(source, "file", f"is not valid {kind}: {exc}")
    return _plain(data), None


def read_folder(root: Path) -> tuple[list[CatalogItem], list[ItemError]]:
    items, errors = [], []
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        if path.name == CATEGORIES_FILE:
            continue
        source = str(path.relative_to(root))
        data, error = _read_document(path, source)
        if error is not None:
            errors.append(error)
        elif not isinstance(data, dict):
            errors.append(ItemError(source, "file", "must hold a mapping of listing fields"))
        else:
            items.append(CatalogItem(source=source, data=data))
    return items, errors


def _csv_cell(column: str, raw: str, problems: Problems) -> Any:
    text = raw.strip()
    if column in CSV_JSON_COLUMNS:
        if not text:
            return None if column == "definition" else []
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            problems.add(column, f"is not valid JSON ({exc.msg} at column {exc.colno})")
            return None
    if column in CSV_LIST_COLUMNS:
        return [part.strip() for part in re.split(r"[|,]", text) if part.strip()]
    if column == "price_cents":
        if not text:
            return 0
        try:
            return int(text)
        except ValueError:
            return text  # reported by validation as not a whole number
    return raw if column == "description" else text


def read_csv(path: Path) -> tuple[list[CatalogItem], list[ItemError]]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel writes a byte order mark
    except (OSError, UnicodeDecodeError) as exc:
        return [], [ItemError(path.name, "file", f"cannot be read as UTF-8: {exc}")]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED_FIELDS if c not in columns]
    unknown = [c for c in columns if c and c not in FIELDS]
    if missing or unknown:
        problem = "; ".join(
            part
            for part in (
                f"missing column(s): {', '.join(missing)}" if missing else "",
                f"unknown column(s): {', '.join(unknown)}" if unknown else "",
            )
            if part
        )
        return [], [ItemError(f"{path.name} row 1", "header", problem)]
    items, errors = [], []
    for number, row in enumerate(reader, start=2):
        cells = {(k or "").strip(): v or "" for k, v in row.items() if k is not None}
        if not any(v.strip() for v in cells.values()):
            continue
        source = f"{path.name} row {number}"
        problems = Problems(source)
        data = {
            column: _csv_cell(column, value, problems)
            for column, value in cells.items()
            if column in FIELDS and (value.strip() or column in REQUIRED_FIELDS)
        }
        if problems.errors:
            errors += problems.errors
        else:
            items.append(CatalogItem(source=source, data=data))
    return items, errors


def read_categories(path: Path) -> tuple[list[CategorySpec], list[ItemError]]:
    if not path.is_file():
        return [], []
    data, error = _read_document(path, path.name)
    if error is not None:
        return [], [error]
    entries = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return [], [ItemError(path.name, "categories", "must be a list of categories")]
    specs, errors = [], []
    for i, entry in enumerate(entries):
        where = f"categories[{i}]"
        if not isinstance(entry, dict):
            errors.append(ItemError(path.name, where, "must be a mapping"))
            continue
        slug, name = entry.get("slug"), entry.get("name")
        if not isinstance(slug, str) or not CATEGORY_SLUG_PATTERN.match(slug):
            errors.append(ItemError(path.name, f"{where}.slug", "must be a slug like 'sales'"))
            continue
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 80:
            errors.append(ItemError(path.name, f"{where}.name", "must be 1–80 characters"))
            continue
        position = entry.get("position", 100)
        specs.append(
            CategorySpec(
                slug=slug,
                name=name.strip(),
                description=str(entry.get("description") or "")[:300],
                icon=str(entry.get("icon") or "")[:16],
                position=position if isinstance(position, int) and position >= 0 else 100,
            )
        )
    return specs, errors
