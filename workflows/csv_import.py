"""Import workflows from a CSV file: one row per step, rows grouped into workflows by the
`workflow` column (the format is in docs/workflow-templates.md, "CSV import").

    parsed = csv_parse(data)                    # CsvFormatError: not a CSV we can read
    report = csv_import(access=access, parsed=parsed, dry_run=False, on_progress=bar.update)
    report.errors                               # [RowError(row=4, column="prompt", message=…)]

All or nothing across the file: every workflow is built, validated (`workflows.validators`)
and created through `services.workflow_create` inside one transaction, which is rolled back
when any row of any workflow has a problem, or always on a dry run. So a dry run checks
exactly what an import would (name clashes, sub-workflows defined earlier in the file) and
writes nothing. Row numbers are a spreadsheet's: the header is row 1.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from core.exceptions import ApplicationError, ValidationFailed
from tenants.permissions import Access, Perm
from workflows import services, validators
from workflows.definition import NODE_TYPES, SCHEMA_VERSION
from workflows.models import Workflow, WorkflowVersion

MAX_BYTES = 5_000_000
MAX_ROWS = 10_000
REQUIRED_COLUMNS = ("workflow", "step_id", "type")
WORKFLOW_COLUMNS = ("description", "category", "inputs", "output")
STEP_COLUMNS = ("name", "next", "config", "max_attempts", "backoff_seconds", "timeout_seconds")
# Columns that set one config field, for the common cases (anything else goes in `config`).
CONFIG_COLUMNS = ("model", "system", "prompt", "agent", "tool", "expression", "message", "items")
COLUMNS = REQUIRED_COLUMNS + WORKFLOW_COLUMNS + STEP_COLUMNS + CONFIG_COLUMNS
INPUT_TYPES = ("string", "number", "integer", "boolean", "object", "array")
_SEPARATORS = re.compile(r"[|;,\n]")
_STEP_PATH = re.compile(r"^steps\[(\d+)\](?: \([^)]*\))?(.*)$")
_EDGE_PATH = re.compile(r"^edges\[(\d+)\]")


class CsvFormatError(ApplicationError):
    """The file as a whole cannot be read: not UTF-8, not CSV, wrong header, too big."""

    code = "csv_format"
    status = 400


@dataclass(frozen=True)
class RowError:
    row: int  # as a spreadsheet numbers it: the header is row 1
    column: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.message}"


@dataclass
class WorkflowDraft:
    """One workflow of the file, as its rows describe it."""

    name: str
    first_row: int
    description: str = ""
    category: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, str]] = field(default_factory=list)
    # Where things came from, to name the row and column of a validation issue.
    step_rows: list[int] = field(default_factory=list)
    step_columns: list[set[str]] = field(default_factory=list)  # config columns each row used
    edge_rows: list[int] = field(default_factory=list)
    detail_rows: dict[str, int] = field(default_factory=dict)  # description/… → row
    errors: list[RowError] = field(default_factory=list)

    @property
    def definition(self) -> dict[str, Any]:
        document: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        if self.inputs:
            document["inputs"] = self.inputs
        document["steps"] = self.steps
        document["edges"] = self.edges
        if self.output is not None:
            document["output"] = self.output
        return document


@dataclass
class ParsedCsv:
    workflows: list[WorkflowDraft]
    rows: int
    errors: list[RowError] = field(default_factory=list)  # rows that name no workflow


@dataclass
class ImportReport:
    workflows: list[WorkflowDraft]
    errors: list[RowError]
    created: list[Workflow]
    dry_run: bool

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def steps(self) -> int:
        return sum(len(w.steps) for w in self.workflows)


# --- reading the file ----------------------------------------------------------------------


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    if len(data) > MAX_BYTES:
        raise CsvFormatError(f"The file is larger than {MAX_BYTES // 1_000_000} MB.")
    try:
        return data.decode("utf-8-sig")  # Excel writes a byte order mark
    except UnicodeDecodeError as exc:
        raise CsvFormatError(
            f"The file is not UTF-8 text (byte {exc.start}); save it as “CSV UTF-8”."
        ) from exc


def _delimiter(text: str) -> str:
    """Comma, or semicolon/tab as some spreadsheet locales save CSV: whichever separates the
    header row's cells (column names hold none of them)."""
    header = text.split("\n", 1)[0]
    return max((",", ";", "\t"), key=header.count)


def _header(raw: list[str]) -> list[str]:
    columns = [c.strip().lower().replace(" ", "_") for c in raw]
    problems = []
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    unknown = [c for c in columns if c and c not in COLUMNS]
    if unknown:
        problems.append(f"unknown column(s): {', '.join(unknown)}")
    repeated = sorted({c for c in columns if c and columns.count(c) > 1})
    if repeated:
        problems.append(f"repeated column(s): {', '.join(repeated)}")
    if problems:
        raise CsvFormatError(
            "The header row (row 1) does not fit: "
            + "; ".join(problems)
            + f". Required: {', '.join(REQUIRED_COLUMNS)}; optional: "
            + ", ".join(WORKFLOW_COLUMNS + STEP_COLUMNS + CONFIG_COLUMNS)
            + "."
        )
    return columns


def _records(text: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    reader = csv.reader(io.StringIO(text, newline=""), csv.excel, delimiter=_delimiter(text))
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise CsvFormatError(f"The file is not valid CSV (line {reader.line_num}): {exc}") from exc
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise CsvFormatError("The file is empty: the first row must name the columns.")
    columns = _header(rows[0])
    if len(rows) - 1 > MAX_ROWS:
        raise CsvFormatError(f"The file has {len(rows) - 1} rows; at most {MAX_ROWS} are read.")
    records = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(columns) and any(cell.strip() for cell in row[len(columns) :]):
            raise CsvFormatError(
                f"Row {number} has {len(row)} cells but the header names {len(columns)} columns."
            )
        cells = {c: (row[i] if i < len(row) else "") for i, c in enumerate(columns) if c}
        records.append((number, cells))
    return columns, records


# --- cells -----------------------------------------------------------------------------------


def _type_names() -> dict[str, str]:
    """What a spreadsheet may write in `type`: the type (`webhook_wait`), with spaces
    (`webhook wait`) or its label (`Wait for webhook`, `LLM prompt`), in any case."""
    names = {}
    for name, node in NODE_TYPES.items():
        label = node.label.lower()
        for alias in (name, name.replace("_", " "), label, label.replace("-", "")):
            names[alias] = name
    return names


_TYPE_NAMES = _type_names()


def _json_cell(value: str) -> tuple[Any, str]:
    try:
        return json.loads(value), ""
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"


def _int_cell(value: str) -> tuple[int | None, str]:
    try:
        return int(value.strip()), ""
    except ValueError:
        return None, f"must be a whole number, not {value.strip()!r}"


def _number_cell(value: str) -> tuple[float | None, str]:
    try:
        return float(value.strip()), ""
    except ValueError:
        return None, f"must be a number, not {value.strip()!r}"


def _inputs_cell(value: str) -> tuple[dict[str, Any] | None, str]:
    """A JSON object (docs/workflows.md `inputs`), or the short form `ticket, priority:integer,
    note?` (type string unless given; `?` marks an optional input)."""
    text = value.strip()
    if text.startswith("{"):
        parsed, problem = _json_cell(text)
        if problem:
            return None, problem
        if not isinstance(parsed, dict):
            return None, "must be a JSON object or a list like `ticket, count:integer, note?`"
        return parsed, ""
    inputs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in _SEPARATORS.split(text))):
        name, _, kind = part.partition(":")
        name, kind = name.strip(), kind.strip() or "string"
        optional = name.endswith("?") or kind.endswith("?")
        name, kind = name.rstrip("?").strip(), kind.rstrip("?").strip()
        if kind not in INPUT_TYPES:
            return None, f"{part!r}: the type must be one of {', '.join(INPUT_TYPES)}"
        inputs[name] = {"type": kind, "required": not optional}
    return inputs, ""


def _edges_cell(value: str, source: str) -> list[dict[str, str]]:
    """`next`: successor ids separated by | ; , or new lines; `branch:step` for an edge that
    leaves a condition, router or approval step on that branch (`true:page`)."""
    edges = []
    for part in filter(None, (p.strip() for p in _SEPARATORS.split(value))):
        branch, _, target = part.rpartition(":")
        edge = {"from": source, "to": target.strip()}
        if branch.strip():
            edge["branch"] = branch.strip()
        edges.append(edge)
    return edges


# --- rows → workflows ------------------------------------------------------------------------


def _workflow_details(draft: WorkflowDraft, number: int, record: dict[str, str]) -> None:
    for column in WORKFLOW_COLUMNS:
        raw = record.get(column, "").strip()
        if not raw:
            continue
        if column in ("description", "category"):
            value: Any = raw
        elif column == "inputs":
            value, problem = _inputs_cell(raw)
            if problem:
                draft.errors.append(RowError(number, column, problem))
                continue
        else:
            value, problem = _json_cell(raw)
            if problem or not isinstance(value, dict):
                draft.errors.append(
                    RowError(number, column, problem or "must be a JSON object (name → template)")
                )
                continue
        if column in draft.detail_rows:
            if getattr(draft, column) != value:
                first = draft.detail_rows[column]
                draft.errors.append(
                    RowError(
                        number,
                        column,
                        f"differs from row {first}; give a workflow's {column} once "
                        "(or the same on every row)",
                    )
                )
            continue
        draft.detail_rows[column] = number
        setattr(draft, column, value)


def _step(draft: WorkflowDraft, number: int, record: dict[str, str]) -> None:
    step_id = record["step_id"].strip()
    raw_type = record["type"].strip()
    node_type = _TYPE_NAMES.get(raw_type.lower(), raw_type)
    if not step_id:
        draft.errors.append(RowError(number, "step_id", "is empty; every row is one step"))
    if not raw_type:
        draft.errors.append(
            RowError(number, "type", f"is empty (one of {', '.join(sorted(NODE_TYPES))})")
        )
    config, used = _step_config(draft, number, record, node_type)
    step: dict[str, Any] = {"id": step_id, "type": node_type}
    if record.get("name", "").strip():
        step["name"] = record["name"].strip()
    step["config"] = config
    step.update(_step_limits(draft, number, record))
    draft.steps.append(step)
    draft.step_rows.append(number)
    draft.step_columns.append(used)
    for edge in _edges_cell(record.get("next", ""), step_id):
        draft.edges.append(edge)
        draft.edge_rows.append(number)


def _step_config(
    draft: WorkflowDraft, number: int, record: dict[str, str], node_type: str
) -> tuple[dict[str, Any], set[str]]:
    """The step's config: the `config` column's JSON object plus the config columns (each
    given once, and only where the step type has that setting). Also the columns used."""
    config: dict[str, Any] = {}
    raw_config = record.get("config", "").strip()
    if raw_config:
        parsed, problem = _json_cell(raw_config)
        if problem or not isinstance(parsed, dict):
            draft.errors.append(RowError(number, "config", problem or "must be a JSON object"))
        else:
            config = parsed
    used: set[str] = set()
    known = NODE_TYPES.get(node_type)
    for column in CONFIG_COLUMNS:
        value = record.get(column, "")
        if not value.strip():
            continue
        if known is not None and column not in known.config_schema.get("properties", {}):
            draft.errors.append(
                RowError(number, column, f"does not apply to a {node_type} step; leave it empty")
            )
        elif column in config:
            draft.errors.append(
                RowError(number, column, "is also set in the config column; give it once")
            )
        else:
            config[column] = value.strip() if column in ("model", "agent", "tool") else value
            used.add(column)
    return config, used


def _step_limits(draft: WorkflowDraft, number: int, record: dict[str, str]) -> dict[str, Any]:
    """The step's `retry` and `timeout_seconds`, from their columns (problems go to the draft)."""
    limits: dict[str, Any] = {}
    retry: dict[str, Any] = {}
    for column, parse in (("max_attempts", _int_cell), ("backoff_seconds", _number_cell)):
        if record.get(column, "").strip():
            number_value, problem = parse(record[column])
            if problem:
                draft.errors.append(RowError(number, column, problem))
            else:
                retry[column] = number_value
    if retry:
        limits["retry"] = retry
    if record.get("timeout_seconds", "").strip():
        timeout, problem = _int_cell(record["timeout_seconds"])
        if problem:
            draft.errors.append(RowError(number, "timeout_seconds", problem))
        else:
            limits["timeout_seconds"] = timeout
    return limits


def csv_parse(data: bytes | str) -> ParsedCsv:
    """The workflows the file describes, in the order they first appear, each with the
    problems of its cells. CsvFormatError when the file as a whole cannot be read."""
    _, records = _records(_decode(data))
    drafts: dict[str, WorkflowDraft] = {}
    orphans: list[RowError] = []
    for number, record in records:
        name = record["workflow"].strip()
        if not name:
            orphans.append(RowError(number, "workflow", "is empty; name the step's workflow"))
            continue
        draft = drafts.setdefault(name, WorkflowDraft(name=name, first_row=number))
        _workflow_details(draft, number, record)
        _step(draft, number, record)
    if not drafts:
        if orphans:
            raise CsvFormatError(f"No row names a workflow ({orphans[0]}).")
        raise CsvFormatError("The file has a header but no rows.")
    return ParsedCsv(workflows=list(drafts.values()), rows=len(records), errors=orphans)


# --- validation issues → rows and columns ----------------------------------------------------


def _issue_location(draft: WorkflowDraft, issue: validators.Issue) -> tuple[int, str]:
    path = issue.path
    step = _STEP_PATH.match(path)
    if step is not None and int(step.group(1)) < len(draft.steps):
        index, rest = int(step.group(1)), step.group(2)
        row = draft.step_rows[index]
        if rest.startswith(".config."):
            key = re.split(r"[.\[]", rest[len(".config.") :], maxsplit=1)[0]
            return row, key if key in draft.step_columns[index] else "config"
        for prefix, column in (
            (".config", "config"),
            (".id", "step_id"),
            (".type", "type"),
            (".name", "name"),
            (".retry.backoff_seconds", "backoff_seconds"),
            (".retry", "max_attempts"),
            (".timeout_seconds", "timeout_seconds"),
        ):
            if rest.startswith(prefix):
                return row, column
        return row, "step_id"
    edge = _EDGE_PATH.match(path)
    if edge is not None and int(edge.group(1)) < len(draft.edges):
        return draft.edge_rows[int(edge.group(1))], "next"
    if path == "edges":
        return draft.first_row, "next"
    for column in ("inputs", "output"):
        if path.startswith(column):
            return draft.detail_rows.get(column, draft.first_row), column
    return draft.first_row, "workflow"


def _definition_errors(draft: WorkflowDraft) -> list[RowError]:
    errors = []
    for issue in validators.validate(draft.definition):
        row, column = _issue_location(draft, issue)
        errors.append(RowError(row, column, str(issue)))
    return errors


def _creation_errors(draft: WorkflowDraft, exc: ValidationFailed) -> list[RowError]:
    errors = []
    for key, messages in (exc.fields or {"workflow": [exc.message]}).items():
        column = key if key in ("description", "category") else "workflow"
        row = draft.detail_rows.get(column, draft.first_row)
        errors += [RowError(row, column, message) for message in messages]
    return errors


def csv_import(
    *,
    access: Access,
    parsed: ParsedCsv,
    dry_run: bool = False,
    source_name: str = "",
    on_progress: Callable[[int], object] | None = None,
) -> ImportReport:
    """Create every workflow of the file (version 1, published, source "import"), or none:
    with any problem, or on a dry run, the transaction is rolled back. Runs in the current
    workspace schema; workflows are created in file order, so a sub-workflow step may name a
    workflow defined higher up in the file."""
    access.require(Perm.BUILD)
    errors: list[RowError] = list(parsed.errors)
    created: list[Workflow] = []
    note = f"Imported from {source_name}" if source_name else "Imported from a CSV file"
    with transaction.atomic():
        for draft in parsed.workflows:
            problems = draft.errors + _definition_errors(draft)
            if not problems:
                try:
                    created.append(
                        services.workflow_create(
                            access=access,
                            name=draft.name,
                            description=draft.description,
                            category=draft.category,
                            definition=draft.definition,
                            source=WorkflowVersion.Source.IMPORT,
                            note=note[:200],
                        )
                    )
                except ValidationFailed as exc:
                    problems = _creation_errors(draft, exc)
            errors += problems
            if on_progress is not None:
                on_progress(1)
        if errors or dry_run:
            transaction.set_rollback(True)
    errors.sort(key=lambda e: e.row)
    return ImportReport(
        workflows=parsed.workflows,
        errors=errors,
        created=[] if errors or dry_run else created,
        dry_run=dry_run,
    )
