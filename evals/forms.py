from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django import forms

EXAMPLE_EVALUATORS = (
    '[{"kind": "regex", "pattern": "\\\\d"},\n'
    ' {"kind": "max_latency", "ms": 5000},\n'
    ' {"kind": "judge", "model": "offline:demo", "rubric": "Answers politely; says \\"thanks\\"."}]'
)


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=80)
    file = forms.FileField(
        label="Cases file",
        help_text="A .csv with input and expected columns, or .jsonl with one "
        '{"input": …, "expected": …} per line.',
    )


class SuiteForm(forms.Form):
    name = forms.CharField(max_length=80)
    dataset = forms.TypedChoiceField(coerce=int, choices=())
    evaluators = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
        help_text="A JSON list; kinds: exact, regex, json_schema, max_cost, max_latency, judge.",
        initial=EXAMPLE_EVALUATORS,
    )
    pass_threshold = forms.DecimalField(
        label="Pass threshold",
        min_value=Decimal(0),
        max_value=Decimal(1),
        initial=Decimal(1),
        help_text="The share of cases that must pass, from 0 to 1.",
    )

    def __init__(self, *args: Any, datasets: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dataset"].choices = datasets  # type: ignore[attr-defined]

    def clean_evaluators(self) -> Any:
        try:
            return json.loads(self.cleaned_data["evaluators"])
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not JSON: {exc.msg} at line {exc.lineno}.") from exc


class StartForm(forms.Form):
    suite = forms.TypedChoiceField(coerce=int, choices=())
    agent = forms.TypedChoiceField(coerce=int, choices=(), required=False, empty_value=None)
    workflow = forms.TypedChoiceField(
        coerce=int, choices=(), required=False, empty_value=None, label="or a workflow"
    )
    version = forms.IntegerField(
        required=False,
        min_value=1,
        help_text="Leave empty for the agent's current version (the workflow's active one).",
    )

    def __init__(
        self,
        *args: Any,
        suites: list[tuple[int, str]],
        agents: list[tuple[int, str]],
        workflows: list[tuple[int, str]],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["suite"].choices = suites  # type: ignore[attr-defined]
        self.fields["agent"].choices = [("", "—"), *agents]  # type: ignore[attr-defined]
        self.fields["workflow"].choices = [("", "—"), *workflows]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any] | None:
        data = super().clean()
        if data is not None and not self.errors:
            if data.get("agent") is None and data.get("workflow") is None:
                self.add_error("agent", "Choose an agent or a workflow.")
            elif data.get("agent") is not None and data.get("workflow") is not None:
                self.add_error("workflow", "Choose an agent or a workflow, not both.")
        return data


class GateForm(forms.Form):
    require_for_publish = forms.BooleanField(
        required=False,
        label="Require a passing evaluation before publishing an agent or a workflow to the "
        "marketplace",
    )


class UpgradeGateForm(forms.Form):
    require_for_upgrade = forms.BooleanField(
        required=False,
        label="Require a passing evaluation before installs auto-upgrade",
        help_text="An install that upgrades automatically does so only after the new version "
        "passed the suite chosen for it (on the Marketplace page).",
    )


class CompareForm(forms.Form):
    left = forms.IntegerField(min_value=1)
    right = forms.IntegerField(min_value=1)
