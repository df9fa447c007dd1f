"""Workflow documents as text: export to JSON or YAML, parse back, import as a new workflow.

An exported document is the definition with the workflow's details in front:

    {"format": "agentmarket.workflow/v1", "name": "Ticket triage", "description": "…",
     "category": "Support", "schema_version": 1, "inputs": {…}, "steps": […], "edges": […]}

Being the definition itself (plus four keys), it can be edited as a whole in the builder's
JSON/YAML view. Agent steps name their agent (`agent`) without the workspace's id
(`agent_id`): saving or importing binds the name again (workflows/agent_refs.py).
`parse_document` gives back the definition alone and also accepts a bare definition or the
definition nested under "definition"; export → parse → bind returns the definition
unchanged. Syntax errors name the line and column; documents over MAX_BYTES are refused before
parsing. YAML is read with the safe loader, without aliases (no "billion laughs").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from agents.models import Agent
from core.exceptions import NotFound, ValidationFailed
from core.hooks import CopyExporting, copy_exporting
from tenants.permissions import Access, Perm
from tenants.schemas import current_schema
from workflows import agent_refs, services
from workflows.models import Workflow, WorkflowVersion

FORMAT = "agentmarket.workflow/v1"
FORMATS = ("json", "yaml")
MAX_BYTES = 1_000_000
META_KEYS = ("format", "name", "description", "category")

_TOP_KEYS = ("schema_version", "inputs", "steps", "edges", "output")
_STEP_KEYS = ("id", "type", "name", "config", "retry", "timeout_seconds", "position")
_EDGE_KEYS = ("from", "to", "branch")


@dataclass(frozen=True)
class Document:
    name: str
    description: str
    category: str
    definition: dict[str, Any]


# --- a stable, readable key order -----------------------------------------------------------


def _ordered(value: dict[str, Any], first: tuple[str, ...]) -> dict[str, Any]:
    keys = [k for k in first if k in value] + sorted(k for k in value if k not in first)
    return {k: _sorted(value[k]) for k in keys}


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def canonical(definition: Any) -> Any:
    """The definition with its keys in a stable order: the top level, steps and edges in the
    documented order, everything nested alphabetically. Equal definitions give equal text
    (PostgreSQL's jsonb does not keep key order, so this is what makes exports stable)."""
    if not isinstance(definition, dict):
        return definition
    result = _ordered(definition, _TOP_KEYS)
    for key, first in (("steps", _STEP_KEYS), ("edges", _EDGE_KEYS)):
        if isinstance(result.get(key), list):
            result[key] = [
                _ordered(item, first) if isinstance(item, dict) else item
                for item in definition[key]
            ]
    return result


def pretty_json(definition: Any) -> str:
    return json.dumps(canonical(definition), indent=2, ensure_ascii=False)


# --- export ----------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (prompts) as `|` blocks, so they read like the text they are."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def _check_format(fmt: str | None, *, allow_none: bool) -> str | None:
    if fmt in (None, "") and allow_none:
        return None
    if fmt not in FORMATS:
        message = f"Use the format json or yaml, not {fmt!r}."
        raise ValidationFailed(message, fields={"format": [message]})
    return fmt


def _version_of(workflow_or_version: Workflow | WorkflowVersion) -> WorkflowVersion:
    if isinstance(workflow_or_version, WorkflowVersion):
        return workflow_or_version
    workflow = workflow_or_version
    version = workflow.active_version or workflow.versions.order_by("-number").first()
    if version is None:
        raise NotFound(f"“{workflow.name}” has no version to export.")
    return version


def export_check(workflow: Workflow, version: WorkflowVersion) -> None:
    """A document leaves the workspace and imports anywhere as an ordinary workflow: a copy of
    a paid marketplace listing, or a version whose steps bind agents copied from one, is not
    exported (403 naming the listing; core.hooks.copy_exporting, answered by the marketplace).
    Asked only when something is a listing's copy."""
    bound = agent_refs.agent_ids(version.definition)
    agent_listings = (
        sorted(
            {
                pk
                for pk in Agent.objects.filter(pk__in=bound).values_list(
                    "listing_version_id", flat=True
                )
                if pk is not None
            }
        )
        if bound
        else []
    )
    if workflow.listing_version_id is None and not agent_listings:
        return
    copy_exporting.check(
        CopyExporting(
            schema_name=current_schema(),
            name=workflow.name,
            listing_version_id=workflow.listing_version_id,
            agent_listing_version_ids=tuple(agent_listings),
        )
    )


def export_definition(
    workflow_or_version: Workflow | WorkflowVersion, fmt: str, *, leaving: bool = True
) -> str:
    """The document of a version (a workflow: its active version) as JSON or YAML text.
    `leaving`: it is a download or the export API (`export_check`); the builder's own JSON/YAML
    view, editing the workflow in place, passes False."""
    fmt = _check_format(fmt, allow_none=False) or "json"
    version = _version_of(workflow_or_version)
    workflow = version.workflow
    if leaving:
        export_check(workflow, version)
    document = {
        "format": FORMAT,
        "name": workflow.name,
        "description": workflow.description,
        "category": workflow.category,
    }
    # Ids mean nothing outside this workspace: a document names its agents (an import binds
    # the names to that workspace's agents again).
    definition = canonical(agent_refs.for_export(version.definition))
    if isinstance(definition, dict):
        document.update(definition)
    if fmt == "yaml":
        return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# --- parse -----------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing aliases: an alias-heavy document can expand enormously."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
            raise yaml.MarkedYAMLError(
                problem="uses an alias (*name); write the value out instead",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)


def _syntax_error(kind: str, line: int, column: int, problem: str) -> ValidationFailed:
    where = f"line {line}, column {column}: {problem}"
    return ValidationFailed(
        f"The document is not valid {kind}: {where}.", fields={"document": [where]}
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _load_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _syntax_error("JSON", exc.lineno, exc.colno, exc.msg) from exc
    except (ValueError, RecursionError) as exc:
        message = f"The document is not valid JSON: {exc}."
        raise ValidationFailed(message, fields={"document": [str(exc)]}) from exc


def _load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot be read"
        if mark is None:
            raise ValidationFailed(
                f"The document is not valid YAML: {problem}.", fields={"document": [problem]}
            ) from exc
        raise _syntax_error("YAML", mark.line + 1, mark.column + 1, problem) from exc
    except (yaml.YAMLError, RecursionError) as exc:
        message = f"The document is not valid YAML: {exc}."
        raise ValidationFailed(message, fields={"document": [str(exc)]}) from exc


def _json_problem(value: Any, path: str = "") -> str:
    """Where `value` holds something JSON cannot (YAML dates, non-text keys, NaN), or ""."""
    if value is None or isinstance(value, str | bool | int):
        return ""
    if isinstance(value, float):
        return "" if math.isfinite(value) else f"{path or 'the document'}: {value} is not a number"
    if isinstance(value, list):
        for n, inner in enumerate(value):
            problem = _json_problem(inner, f"{path}[{n}]")
            if problem:
                return problem
        return ""
    if isinstance(value, dict):
        for key, inner in value.items():
            if not isinstance(key, str):
                return f"{path or 'the document'}: the key {key!r} must be text (quote it)"
            problem = _json_problem(inner, f"{path}.{key}" if path else key)
            if problem:
                return problem
        return ""
    return f"{path or 'the document'}: {type(value).__name__} values are not JSON (quote it)"


def parse(text: str | bytes, fmt: str | None = None) -> Document:
    """The document's details and definition. `fmt` None: JSON if it starts with `{`, else
    YAML. ValidationFailed (fields "document" or "format") on anything unreadable."""
    fmt = _check_format(fmt, allow_none=True)
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise _too_big(len(text))
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            message = "The document is not UTF-8 text."
            raise ValidationFailed(message, fields={"document": [message]}) from exc
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise _too_big(size)
    if not text.strip():
        message = "The document is empty."
        raise ValidationFailed(message, fields={"document": [message]})
    if fmt is None:
        fmt = "json" if text.lstrip().startswith("{") else "yaml"
    data = _load_json(text) if fmt == "json" else _load_yaml(text)
    problem = _json_problem(data)
    if problem:
        raise ValidationFailed(
            f"The document holds a value JSON cannot: {problem}.", fields={"document": [problem]}
        )
    if not isinstance(data, dict):
        message = "The document must be an object (a workflow definition), not a list or a value."
        raise ValidationFailed(message, fields={"document": [message]})
    return _unwrap(data)


def _too_big(size: int) -> ValidationFailed:
    message = f"The document is {size:,} bytes; the limit is {MAX_BYTES:,} bytes (1 MB)."
    return ValidationFailed(message, fields={"document": [message]})


def _unwrap(data: dict[str, Any]) -> Document:
    declared = data.get("format")
    if declared is not None and declared != FORMAT:
        message = f"Unknown document format {declared!r}; this version reads {FORMAT}."
        raise ValidationFailed(message, fields={"document": [message]})
    nested = data.get("definition")
    if isinstance(nested, dict):
        definition = nested
    else:
        definition = {k: v for k, v in data.items() if k not in META_KEYS}
    details: dict[str, str] = {}
    for key in ("name", "description", "category"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            message = f"The document's {key} must be text."
            raise ValidationFailed(message, fields={"document": [message]})
        details[key] = (value or "").strip()
    return Document(definition=definition, **details)


def parse_document(text: str | bytes, fmt: str | None = None) -> dict[str, Any]:
    """The definition a JSON or YAML document holds (see `parse`)."""
    return parse(text, fmt).definition


# --- import ----------------------------------------------------------------------------------


def import_document(
    *, access: Access, text: str | bytes, fmt: str | None, name: str | None = None
) -> Workflow:
    """A new workflow from a document: its definition becomes version 1 (published, source
    IMPORT), with the document's name, description and category unless `name` is given."""
    access.require(Perm.BUILD)
    document = parse(text, fmt)
    return services.workflow_create(
        access=access,
        name=name or document.name,
        description=document.description,
        category=document.category,
        definition=document.definition,
        source=WorkflowVersion.Source.IMPORT,
        note="Imported",
    )
