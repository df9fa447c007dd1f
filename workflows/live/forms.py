"""Forms of the run pages: the start form (generated from a version's declared inputs), the
history filters and the approval decision."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

from django import forms

from workflows.models import RunStatus, Workflow, WorkflowRun, WorkflowVersion

INPUT_PREFIX = "input_"
JSON_TYPES = ("object", "array")


def input_field_name(name: str) -> str:
    return f"{INPUT_PREFIX}{name}"


def _default_text(kind: str, default: Any) -> str:
    if kind in JSON_TYPES:
        return json.dumps(default, indent=2, ensure_ascii=False)
    if kind == "boolean":
        return "yes" if default else "no"
    return str(default)


def _bool(value: str) -> bool:
    return value == "true"


class JSONValueField(forms.CharField):
    """A JSON object or list typed into a textarea."""

    widget = forms.Textarea

    def __init__(self, *, kind: str, **kwargs: Any) -> None:
        self.kind = kind
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if text is None or text in self.empty_values:
            return None
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc
        expected = dict if self.kind == "object" else list
        if not isinstance(parsed, expected):
            raise forms.ValidationError(
                'Enter a JSON object, like {"key": "value"}.'
                if self.kind == "object"
                else "Enter a JSON list, like [1, 2, 3]."
            )
        return parsed


class NumberField(forms.FloatField):
    """A JSON number: whole numbers stay integers (3, not 3.0)."""

    def to_python(self, value: Any) -> Any:
        number = super().to_python(value)
        if isinstance(number, float) and number.is_integer():
            return int(number)
        return number


def _input_field(spec: Mapping[str, Any]) -> forms.Field:
    kind = str(spec.get("type", "string"))
    has_default = "default" in spec
    required = bool(spec.get("required")) and not has_default
    help_parts = [str(spec["description"])] if spec.get("description") else []
    if kind in JSON_TYPES:
        help_parts.append("A JSON object." if kind == "object" else "A JSON list.")
    if has_default and spec.get("default") is not None:
        help_parts.append(f"Empty: {_default_text(kind, spec['default'])}.")
    common: dict[str, Any] = {"required": required, "help_text": " ".join(help_parts)}
    field: forms.Field
    if kind == "integer":
        field = forms.IntegerField(**common)
    elif kind == "number":
        field = NumberField(**common)
    elif kind == "boolean":
        choices = [("true", "Yes"), ("false", "No")]
        field = forms.TypedChoiceField(
            choices=choices if required else [("", "—"), *choices],
            coerce=_bool,
            empty_value=None,
            **common,
        )
    elif kind in JSON_TYPES:
        field = JSONValueField(
            kind=kind,
            widget=forms.Textarea(attrs={"rows": 4, "class": "mono", "spellcheck": "false"}),
            **common,
        )
    else:
        field = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), **common)
    return field


@dataclass(frozen=True)
class InputRow:
    field: forms.BoundField
    name: str
    kind: str


def _version_label(version: WorkflowVersion, active_id: int | None) -> str:
    label = f"v{version.number}"
    if version.pk == active_id:
        return f"{label} (active)"
    return f"{label} · {version.note}" if version.note else label


class RunStartForm(forms.Form):
    """Fields `input_<name>` for each input the version declares, typed by its declaration
    (required ones without a default are required), plus the version to run. `inputs()` gives
    the run's inputs: empty optional fields are left out so the declared default applies."""

    version = forms.TypedChoiceField(coerce=int, label="Version")

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        declared: Mapping[str, Any],
        versions: Sequence[WorkflowVersion],
        selected: WorkflowVersion,
        active_id: int | None,
    ) -> None:
        super().__init__(data, initial={"version": selected.number})
        version_field = cast(forms.TypedChoiceField, self.fields["version"])
        version_field.choices = [(v.number, _version_label(v, active_id)) for v in versions]
        version_field.help_text = "Runs use the active version unless you pin another."
        self.declared = dict(declared or {})
        for name, spec in self.declared.items():
            field = _input_field(spec if isinstance(spec, Mapping) else {})
            field.label = name
            self.fields[input_field_name(name)] = field
            if isinstance(spec, Mapping) and spec.get("default") is not None:
                default = spec["default"]
                kind = spec.get("type", "string")
                self.initial[input_field_name(name)] = (
                    json.dumps(default, indent=2, ensure_ascii=False)
                    if kind in JSON_TYPES
                    else ("true" if default else "false")
                    if kind == "boolean"
                    else default
                )

    def input_fields(self) -> list[InputRow]:
        rows = []
        for name, spec in self.declared.items():
            kind = spec.get("type", "string") if isinstance(spec, Mapping) else "string"
            rows.append(InputRow(field=self[input_field_name(name)], name=name, kind=str(kind)))
        return rows

    def inputs(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self.declared:
            value = self.cleaned_data.get(input_field_name(name))
            if value is None or value == "":
                continue
            values[name] = value
        return values

    def add_input_errors(self, problems: Sequence[str]) -> None:
        """Place the engine's "<name>: <problem>" messages beside their fields."""
        for problem in problems:
            name, _, message = problem.partition(": ")
            field = input_field_name(name)
            if message and field in self.fields:
                self.add_error(field, message[:1].upper() + message[1:] + ".")
            else:
                self.add_error(None, problem)


def _date_widget() -> forms.DateInput:
    return forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class RunFilterForm(forms.Form):
    """The history's filters (a GET form). Invalid values are reported beside their field and
    ignored; `filters()` gives what `run_selectors.run_list` takes."""

    workflow = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    status = forms.ChoiceField(
        choices=[("", "Any status"), *RunStatus.choices], required=False, label="Status"
    )
    version = forms.IntegerField(
        min_value=1,
        required=False,
        label="Version",
        widget=forms.NumberInput(attrs={"placeholder": "Any", "inputmode": "numeric"}),
    )
    trigger = forms.ChoiceField(
        choices=[("", "Any trigger"), *WorkflowRun.TriggerKind.choices],
        required=False,
        label="Trigger",
    )
    date_from = forms.DateField(required=False, label="From", widget=_date_widget())
    date_to = forms.DateField(required=False, label="To", widget=_date_widget())

    def __init__(
        self, data: Mapping[str, Any] | None, *, workflows: Sequence[Workflow] | None
    ) -> None:
        super().__init__(data)
        field = cast(forms.TypedChoiceField, self.fields["workflow"])
        if workflows is None:
            del self.fields["workflow"]
        else:
            field.choices = [("", "All workflows"), *((w.pk, w.name) for w in workflows)]
            field.label = "Workflow"

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "Pick a date on or after the start date.")
        return data

    def filters(self) -> dict[str, Any]:
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {
            "status": data.get("status") or None,
            "version_number": data.get("version"),
            "trigger": data.get("trigger") or None,
            "date_from": data.get("date_from"),
            "date_to": data.get("date_to"),
            "workflow_id": data.get("workflow"),
        }

    @property
    def active(self) -> bool:
        return any(v not in (None, "") for v in self.filters().values())

    def query(self, page: int | None = None) -> str:
        """The filters as a query string (for pagination links)."""
        pairs = [
            (name, self.data.get(name, ""))
            for name in self.fields
            if self.data.get(name, "") not in ("", None)
        ]
        if page is not None:
            pairs.append(("page", str(page)))
        return urlencode(pairs)


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(
        choices=[("approve", "Approve"), ("reject", "Reject")],
        error_messages={
            "required": "Choose Approve or Reject.",
            "invalid_choice": "Choose Approve or Reject.",
        },
    )
    comment = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Comment",
    )
