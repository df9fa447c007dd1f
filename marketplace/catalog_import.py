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

Workflow definitions are checked with the structural checks of `workflows.validators` (schema,
ids, edges, cycles, entry, reachability, expressions, references, tools). The checks that read a
workspace schema (agents, model aliases, sub-workflows, plan limits) cannot run in the public
schema; instead, every agent step must name an agent the item's `agents` list defines, models
must be the `default` alias and sub-workflow steps are refused.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from django.db import transaction
from django.utils import timezone

from marketplace.icons import is_single_icon
from marketplace.models import Category, Listing, ListingVersion, Publisher

logger = logging.getLogger(__name__)

CATALOG_DIR = Path(__file__).parent / "catalog"
CATEGORIES_FILE = "categories.yaml"
PLATFORM_PUBLISHER = {"slug": "agent-market", "display_name": "Agent Market"}
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,79}$")
CATEGORY_SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,59}$")
DEFAULT_MODEL = "default"
# knowledge_search needs a workspace's knowledge base, which a catalogue listing cannot bring.
CATALOG_EXCLUDED_TOOLS = frozenset({"knowledge_search"})

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
# CSV: one row per listing; list columns are separated by | or , ; JSON columns hold JSON.
CSV_LIST_COLUMNS = ("tags", "providers")
CSV_JSON_COLUMNS = ("definition", "example_inputs")

AGENT_FIELDS = (
    "name",
    "description",
    "category",
    "model",
    "system_prompt",
    "temperature",
    "max_tokens",
    "tools",
    "memory_mode",
    "memory_turns",
    "max_tool_calls",
    "max_cost_per_run_usd",
    "blocked_patterns",
    "output_schema",
    "cache_enabled",
)
# Settings newer than the catalogue format: taken when present.
OPTIONAL_AGENT_FIELDS = ("cache_semantic", "cache_verify", "cache_per_user")
MEMORY_MODES = ("none", "last_turns", "summary")
# The listing fields the importer owns; a difference in any of them is an update.
METADATA_FIELDS = (
    "kind",
    "title",
    "summary",
    "description",
    "tags",
    "icon",
    "providers",
    "pricing",
    "price_cents",
)


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
    warnings: list[str] = field(default_factory=list)
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


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[ItemError] = []

    def add(self, field_name: str, message: str) -> None:
        self.errors.append(ItemError(self.source, field_name, message))


# --- reading ---------------------------------------------------------------------------------


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


def _read_folder(root: Path) -> tuple[list[CatalogItem], list[ItemError]]:
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


def _csv_cell(column: str, raw: str, problems: _Problems) -> Any:
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


def _read_csv(path: Path) -> tuple[list[CatalogItem], list[ItemError]]:
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
        problems = _Problems(source)
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


def _read_categories(path: Path) -> tuple[list[CategorySpec], list[ItemError]]:
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


# --- validation ------------------------------------------------------------------------------


def catalog_tools() -> frozenset[str]:
    """Tool names a catalogue agent may use: the built-in tools that need no workspace data."""
    from agents.tools.registry import BUILTIN_TOOLS

    return frozenset(BUILTIN_TOOLS) - CATALOG_EXCLUDED_TOOLS


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_string_list(value: Any, name: str, limit: int, problems: _Problems) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.add(name, "must be a list of non-empty strings")
    elif any(len(v) > limit for v in value):
        problems.add(name, f"entries must be at most {limit} characters")


def validate_agent_spec(spec: Any, where: str, problems: _Problems) -> None:
    """An agent spec as the publish service writes it (every field present, nothing else)."""
    from agents.services import output_schema_problem

    if not isinstance(spec, dict):
        problems.add(where, "must be a mapping of agent settings")
        return
    missing = [f for f in AGENT_FIELDS if f not in spec]
    unknown = sorted(set(spec) - set(AGENT_FIELDS) - set(OPTIONAL_AGENT_FIELDS))
    if missing:
        problems.add(where, f"missing {', '.join(missing)}")
    if unknown:
        problems.add(where, f"unknown field(s) {', '.join(unknown)}")
    name = spec.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 80:
        problems.add(f"{where}.name", "must be 1–80 characters")
    for text in ("description", "category"):
        if text in spec and not isinstance(spec[text], str):
            problems.add(f"{where}.{text}", "must be a string")
    if "model" in spec and spec["model"] != DEFAULT_MODEL:
        problems.add(f"{where}.model", f"must be the alias '{DEFAULT_MODEL}'")
    prompt = spec.get("system_prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        problems.add(f"{where}.system_prompt", "must be a non-empty string")
    temperature = spec.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, int | float)
        or isinstance(temperature, bool)
        or not 0 <= temperature <= 2
    ):
        problems.add(f"{where}.temperature", "must be a number from 0 to 2, or null")
    for number, low, high in (
        ("max_tokens", 1, 200_000),
        ("memory_turns", 0, 100),
        ("max_tool_calls", 0, 100),
    ):
        value = spec.get(number)
        if number in spec and not (
            isinstance(value, int) and _is_int(value) and low <= value <= high
        ):
            problems.add(f"{where}.{number}", f"must be a whole number from {low} to {high}")
    tools = spec.get("tools", [])
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        problems.add(f"{where}.tools", "must be a list of tool names")
    else:
        allowed = catalog_tools()
        unknown_tools = [t for t in tools if t not in allowed]
        if unknown_tools:
            problems.add(
                f"{where}.tools",
                f"unknown tool(s) {', '.join(unknown_tools)} (tools: {', '.join(sorted(allowed))})",
            )
    if "memory_mode" in spec and spec["memory_mode"] not in MEMORY_MODES:
        problems.add(f"{where}.memory_mode", f"must be one of {', '.join(MEMORY_MODES)}")
    cap = spec.get("max_cost_per_run_usd")
    if cap is not None:
        try:
            valid_cap = isinstance(cap, str) and Decimal(cap) > 0
        except InvalidOperation:
            valid_cap = False
        if not valid_cap:
            problems.add(f"{where}.max_cost_per_run_usd", "must be a positive decimal string")
    patterns = spec.get("blocked_patterns", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        problems.add(f"{where}.blocked_patterns", "must be a list of regular expressions")
    else:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.add(f"{where}.blocked_patterns", f"{pattern!r}: {exc}")
    schema = spec.get("output_schema")
    if schema is not None:
        problem = output_schema_problem(schema)
        if problem:
            problems.add(f"{where}.output_schema", problem)
    for flag in ("cache_enabled", *OPTIONAL_AGENT_FIELDS):
        if flag in spec and not isinstance(spec[flag], bool):
            problems.add(f"{where}.{flag}", "must be true or false")


def workflow_structure_issues(document: Any) -> list[str]:
    """The workflow validators' checks that need no workspace schema, as "path: message"."""
    from workflows import validators

    issues = validators.check_schema(document)
    # _shape_ok is the validators' own gate: the graph checks assume the shape it checks.
    if not validators._shape_ok(document):
        return [str(i) for i in issues] or ["definition: is not a workflow definition"]
    for check in (
        validators.check_unique_ids,
        validators.check_edges,
        validators.check_acyclic,
        validators.check_single_entry,
        validators.check_reachable,
        validators.check_expressions,
        validators.check_references,
        validators.check_tools,
    ):
        issues += check(document)
    return [str(i) for i in dict.fromkeys(issues)]


def _step_bodies(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, type, config) of every step and every map body."""
    for i, step in enumerate(document.get("steps") or []):
        config = step.get("config") or {}
        label = f"steps[{i}] ({step.get('id')})"
        yield label, step.get("type", ""), config
        if step.get("type") == "map":
            body = config.get("node") or {}
            yield f"{label}.config.node", body.get("type", ""), body.get("config") or {}


def _validate_workflow(definition: dict[str, Any], problems: _Problems) -> None:
    unknown = sorted(set(definition) - {"workflow", "agents"})
    if unknown:
        problems.add("definition", f"unknown key(s) {', '.join(unknown)}")
    document = definition.get("workflow")
    agents = definition.get("agents", [])
    if not isinstance(agents, list):
        problems.add("definition.agents", "must be a list of agent specs")
        agents = []
    for i, spec in enumerate(agents):
        validate_agent_spec(spec, f"definition.agents[{i}]", problems)
    if not isinstance(document, dict):
        problems.add("definition.workflow", "must be a workflow definition (a mapping)")
        return
    for issue in workflow_structure_issues(document):
        problems.add("definition.workflow", issue)
    if problems.errors:
        return
    names = {spec.get("name") for spec in agents if isinstance(spec, dict)}
    for path, node_type, config in _step_bodies(document):
        if node_type == "agent" and "agent_id" in config:
            problems.add(
                f"definition.workflow.{path}.config.agent_id",
                "is a workspace's own id; a snapshot names its agents (config.agent) only",
            )
        elif node_type == "agent" and config.get("agent") not in names:
            problems.add(
                f"definition.workflow.{path}.config.agent",
                f"names {config.get('agent')!r}, which definition.agents does not define",
            )
        elif node_type == "sub_workflow":
            problems.add(f"definition.workflow.{path}", "sub-workflow steps cannot be published")
        elif node_type in ("llm", "router") and config.get("model", DEFAULT_MODEL) not in (
            DEFAULT_MODEL,
            None,
        ):
            problems.add(f"definition.workflow.{path}.config.model", f"must be '{DEFAULT_MODEL}'")


def validate_item(item: CatalogItem, *, category_slugs: set[str]) -> list[ItemError]:
    """Every problem of one item, each naming its field; [] when it can be imported."""
    problems = _Problems(item.source)
    data = item.data
    for name in REQUIRED_FIELDS:
        if data.get(name) in (None, "", [], {}):
            problems.add(name, "is required")
    for name in sorted(set(data) - set(FIELDS)):
        problems.add(name, f"is not a listing field (fields: {', '.join(FIELDS)})")
    slug = data.get("slug")
    if slug and (not isinstance(slug, str) or not SLUG_PATTERN.match(slug)):
        problems.add("slug", "must be 2–80 lowercase letters, digits and hyphens")
    kind = data.get("kind")
    if kind and kind not in Listing.Kind.values:
        problems.add("kind", f"must be one of {', '.join(Listing.Kind.values)}, not {kind!r}")
    for name, limit in (("title", 100), ("summary", 200)):
        value = data.get(name)
        if value and (not isinstance(value, str) or len(value.strip()) > limit):
            problems.add(name, f"must be a string of at most {limit} characters")
    if not isinstance(data.get("description", ""), str):
        problems.add("description", "must be Markdown text")
    category = data.get("category")
    if category and category not in category_slugs:
        problems.add("category", f"unknown category {category!r} (add it to {CATEGORIES_FILE})")
    for name in ("tags", "providers"):
        if name in data:
            _check_string_list(data[name], name, 30, problems)
    icon = data.get("icon", "")
    if not isinstance(icon, str) or (icon and not is_single_icon(icon)):
        problems.add("icon", "must be a single emoji")
    if not isinstance(data.get("changelog", ""), str):
        problems.add("changelog", "must be text")
    pricing = data.get("pricing", Listing.Pricing.FREE)
    price = data.get("price_cents", 0)
    if pricing not in Listing.Pricing.values:
        problems.add("pricing", f"must be one of {', '.join(Listing.Pricing.values)}")
    elif not _is_int(price) or price < 0:
        problems.add("price_cents", "must be a whole number of cents, 0 or more")
    elif pricing == Listing.Pricing.FREE and price:
        problems.add("price_cents", "must be 0 for a free listing")
    elif pricing != Listing.Pricing.FREE and not price:
        problems.add("price_cents", f"must be more than 0 for pricing {pricing!r}")
    examples = data.get("example_inputs", [])
    if not isinstance(examples, list | dict):
        problems.add("example_inputs", "must be a list of examples (or one mapping)")
    definition = data.get("definition")
    if definition and kind in Listing.Kind.values:
        if not isinstance(definition, dict):
            problems.add("definition", "must be a mapping")
        elif kind == Listing.Kind.AGENT:
            if set(definition) != {"agent"}:
                problems.add("definition", "an agent's definition is {agent: {…settings}}")
            else:
                validate_agent_spec(definition["agent"], "definition.agent", problems)
        else:
            _validate_workflow(definition, problems)
    return problems.errors


# --- writing ---------------------------------------------------------------------------------


def _required_tools(kind: str, definition: dict[str, Any]) -> list[str]:
    if kind == Listing.Kind.AGENT:
        return sorted(set(definition["agent"].get("tools") or []))
    tools = {t for spec in definition.get("agents", []) for t in spec.get("tools") or []}
    for _, node_type, config in _step_bodies(definition["workflow"]):
        if node_type == "tool" and isinstance(config.get("tool"), str):
            tools.add(config["tool"])
    return sorted(tools)


def _examples(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, dict) else list(value)


def _metadata(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": data["kind"],
        "title": data["title"].strip(),
        "summary": " ".join(data["summary"].split()),
        "description": (data.get("description") or "").strip(),
        "tags": list(data.get("tags") or []),
        "icon": data.get("icon") or "",
        "providers": list(data.get("providers") or []),
        "pricing": data.get("pricing") or Listing.Pricing.FREE,
        "price_cents": data.get("price_cents") or 0,
    }


def platform_publisher() -> Publisher:
    publisher, _ = Publisher.objects.get_or_create(
        slug=PLATFORM_PUBLISHER["slug"],
        defaults={
            "display_name": PLATFORM_PUBLISHER["display_name"],
            "verified": True,
            "workspace": None,
        },
    )
    return publisher


def _upsert_categories(specs: list[CategorySpec]) -> int:
    for spec in specs:
        Category.objects.update_or_create(
            slug=spec.slug,
            defaults={
                "name": spec.name,
                "description": spec.description,
                "icon": spec.icon,
                "position": spec.position,
            },
        )
    return len(specs)


def _new_version(
    listing: Listing, *, number: int, data: dict[str, Any], definition: dict[str, Any]
) -> ListingVersion:
    now = timezone.now()
    version = ListingVersion.objects.create(
        listing=listing,
        number=number,
        changelog=(data.get("changelog") or "").strip(),
        definition=definition,
        required_tools=_required_tools(listing.kind, definition),
        required_providers=list(data.get("providers") or []),
        example_inputs=_examples(data.get("example_inputs")),
        status=ListingVersion.Status.APPROVED,
        moderation_reason="Platform catalogue import.",
        moderated_at=now,
        source_kind=listing.kind,
    )
    listing.current_version = version
    if listing.published_at is None:
        listing.published_at = now
    listing.save(update_fields=["current_version", "published_at", "updated_at"])
    return version


def _differences(
    listing: Listing, *, data: dict[str, Any], category_id: int | None
) -> tuple[list[str], bool]:
    """(listing fields that differ, whether the version content differs)."""
    metadata = _metadata(data)
    current = listing.current_version
    behaviour_changed = (
        current is None
        or current.definition != data["definition"]
        or current.example_inputs != _examples(data.get("example_inputs"))
        or list(current.required_providers) != list(data.get("providers") or [])
    )
    changed_fields = [f for f, v in metadata.items() if getattr(listing, f) != v]
    if listing.category_id != category_id:
        changed_fields.append("category")
    return changed_fields, behaviour_changed


def _outcome_preview(item: CatalogItem) -> str:
    """What importing the item would do, without writing (for a dry run)."""
    listing = Listing.objects.select_related("current_version").filter(slug=item.slug).first()
    if listing is None:
        return "created"
    category_id = (
        Category.objects.filter(slug=item.data["category"]).values_list("pk", flat=True).first()
    )
    changed_fields, behaviour_changed = _differences(
        listing, data=item.data, category_id=category_id
    )
    return "updated" if changed_fields or behaviour_changed else "unchanged"


def _write_item(
    item: CatalogItem, *, publisher: Publisher, categories: dict[str, Category]
) -> tuple[str, Listing | None]:
    """("created" | "updated" | "unchanged", the listing to re-index or None)."""
    data = item.data
    metadata = _metadata(data)
    category = categories[data["category"]]
    definition = data["definition"]
    listing = (
        Listing.objects.select_for_update(of=("self",))
        .select_related("current_version")
        .filter(slug=data["slug"])
        .first()
    )
    if listing is None:
        listing = Listing.objects.create(
            publisher=publisher, slug=data["slug"], category=category, **metadata
        )
        _new_version(listing, number=1, data=data, definition=definition)
        return "created", listing
    changed_fields, behaviour_changed = _differences(listing, data=data, category_id=category.pk)
    if not behaviour_changed and not changed_fields:
        return "unchanged", None
    if changed_fields:
        for name in changed_fields:
            setattr(listing, name, category if name == "category" else metadata[name])
        listing.save(update_fields=[*changed_fields, "updated_at"])
    if behaviour_changed:
        last = listing.versions.order_by("-number").values_list("number", flat=True).first()
        _new_version(listing, number=(last or 0) + 1, data=data, definition=definition)
    return "updated", listing


def _index(listings: list[Listing], report: ImportReport) -> None:
    if not listings:
        return
    try:
        from marketplace.search_index import index_listing
    except ImportError as exc:
        message = f"search index not updated ({exc}); run the index backfill later"
        logger.warning("catalog import: %s", message)
        report.warnings.append(message)
        return
    for listing in listings:
        listing.refresh_from_db()
        index_listing(listing)


def import_catalog(
    path: Path | str | None = None,
    *,
    dry_run: bool = False,
    progress: Callable[[int, int], object] | None = None,
) -> ImportReport:
    """Import a catalogue folder (recursively: YAML/JSON files, `categories.yaml` at its top)
    or a CSV file (categories from a `categories.yaml` beside it, or already in the database).
    `progress(done, total)` is called after each item. Never raises on bad input: every
    problem is in `report.errors`."""
    root = Path(path) if path is not None else CATALOG_DIR
    report = ImportReport(dry_run=dry_run)
    if root.is_dir():
        category_specs, errors = _read_categories(root / CATEGORIES_FILE)
        items, read_errors = _read_folder(root)
    elif root.is_file() and root.suffix == ".csv":
        category_specs, errors = _read_categories(root.parent / CATEGORIES_FILE)
        items, read_errors = _read_csv(root)
    else:
        report.errors.append(ItemError(str(root), "path", "is neither a folder nor a .csv file"))
        report.failed.append(str(root))
        return report
    errors += read_errors
    known = {spec.slug for spec in category_specs} | set(
        Category.objects.values_list("slug", flat=True)
    )
    seen: dict[str, str] = {}
    valid: list[CatalogItem] = []
    for item in items:
        problems = validate_item(item, category_slugs=known)
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
    report.errors = errors
    report.failed = list(dict.fromkeys(e.source for e in errors))
    total = len(valid) + len(report.failed)
    done = len(report.failed)
    if progress is not None and done:
        progress(done, total)
    if dry_run:
        for item in valid:
            getattr(report, _outcome_preview(item)).append(item.slug)
            done += 1
            if progress is not None:
                progress(done, total)
        report.categories = len(category_specs)
        return report
    with transaction.atomic():
        report.categories = _upsert_categories(category_specs)
        publisher = platform_publisher()
    categories = {c.slug: c for c in Category.objects.all()}
    changed: list[Listing] = []
    for item in valid:
        with transaction.atomic():
            outcome, listing = _write_item(item, publisher=publisher, categories=categories)
        getattr(report, outcome).append(item.slug)
        if listing is not None:
            changed.append(listing)
        done += 1
        if progress is not None:
            progress(done, total)
    _index(changed, report)
    return report
