"""Reading a dataset upload: CSV with a header row, or JSON Lines, one case per row.

Each case has `input` (required, text) and `expected` (optional, text; what an exact-match
evaluator compares with). Every problem is reported with its line and field, all at once."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from core.exceptions import ValidationFailed

MAX_BYTES = 2 * 1024 * 1024
MAX_CASES = 1000
MAX_INPUT_CHARS = 20_000
FIELDS = ("input", "expected")


@dataclass(frozen=True)
class ParsedCase:
    input: str
    expected: str


def _check(line: int, row: dict[str, Any], errors: list[str]) -> ParsedCase | None:
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        errors.append(f"line {line}: unknown field {unknown[0]!r} (use input, expected)")
        return None
    value, expected = row.get("input"), row.get("expected", "")
    if not isinstance(value, str) or not value.strip():
        errors.append(f"line {line}, field input: required text")
        return None
    if len(value) > MAX_INPUT_CHARS:
        errors.append(f"line {line}, field input: at most {MAX_INPUT_CHARS} characters")
        return None
    if expected is None:
        expected = ""
    if not isinstance(expected, str):
        errors.append(f"line {line}, field expected: must be text")
        return None
    return ParsedCase(input=value.strip(), expected=expected)


def _csv_cases(text: str, errors: list[str]) -> list[ParsedCase]:
    reader = csv.DictReader(io.StringIO(text))
    if "input" not in (reader.fieldnames or []):
        raise ValidationFailed(
            "The CSV has no input column.",
            fields={"file": ["line 1: the header must name an input column"]},
        )
    cases = []
    for row in reader:
        cleaned = {k: v for k, v in row.items() if k is not None}
        case = _check(reader.line_num, cleaned, errors)
        if case is not None:
            cases.append(case)
    return cases


def _jsonl_cases(text: str, errors: list[str]) -> list[ParsedCase]:
    cases = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(row, dict):
            errors.append(f"line {number}: must be a JSON object")
            continue
        case = _check(number, row, errors)
        if case is not None:
            cases.append(case)
    return cases


def parse_cases(*, filename: str, data: bytes) -> list[ParsedCase]:
    """The cases of a .csv or .jsonl upload; raises ValidationFailed on field `file` listing
    every bad line."""
    if len(data) > MAX_BYTES:
        raise ValidationFailed(
            "The file is too large.", fields={"file": [f"At most {MAX_BYTES // 1024} KB."]}
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(
            "The file is not UTF-8 text.", fields={"file": ["Save it as UTF-8."]}
        ) from exc
    name = filename.lower()
    errors: list[str] = []
    if name.endswith(".csv"):
        cases = _csv_cases(text, errors)
    elif name.endswith((".jsonl", ".ndjson")):
        cases = _jsonl_cases(text, errors)
    else:
        raise ValidationFailed(
            "Upload a .csv or .jsonl file.", fields={"file": ["Only .csv and .jsonl files."]}
        )
    if errors:
        raise ValidationFailed(
            f"{len(errors)} line(s) of the file are wrong.", fields={"file": errors[:20]}
        )
    if not cases:
        raise ValidationFailed("The file has no cases.", fields={"file": ["No cases found."]})
    if len(cases) > MAX_CASES:
        raise ValidationFailed(
            "Too many cases.", fields={"file": [f"At most {MAX_CASES} cases per dataset."]}
        )
    return cases
