"""*Test this step* in the builder's step panel: GET gives the form, its sample filled from the
last run's upstream outputs (or a skeleton of the workflow's inputs); POST runs the step of the
version on screen once (workflows/step_tests.py) and answers the panel's region again with the
output, tokens, cost and duration, or the problems beside the sample field. htmx swaps the
region in place; without JavaScript the same region is the whole answer.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from core.exceptions import ValidationFailed
from core.formatting import cost_text, duration_text
from core.http import int_or_none
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Access, Perm
from workflows import selectors, step_tests
from workflows.models import WorkflowVersion

TEMPLATE = "workflows/builder/_panel_step_test.html"


class StepTestForm(forms.Form):
    version = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    sample = forms.CharField(
        label="Sample input (JSON)",
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false", "class": "wf-code"}),
        help_text='What the step reads: {"input": {…}, "steps": {step id: output}}.',
    )

    def clean_sample(self) -> Any:
        text = self.cleaned_data["sample"]
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"This is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
            ) from exc


def _version(request: AppRequest, workflow_id: int, access: Access) -> WorkflowVersion:
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    number = int_or_none(request.POST.get("version") or request.GET.get("version"))
    return selectors.version_or_latest(workflow, number)


@require_http_methods(["GET", "POST"])
def workflow_step_test(request: AppRequest, workflow_id: int, step_id: str) -> HttpResponse:
    access = page_access(request, Perm.RUN)
    version = _version(request, workflow_id, access)
    context: dict[str, Any] = {"workflow": version.workflow, "version": version, "step_id": step_id}
    context["untestable"] = step_tests.untestable_reason(version, step_id)
    if request.method == "GET":
        sample = step_tests.step_test_sample(access=access, version=version, step_id=step_id)
        context["filled_from"] = sample.run_id
        context["form"] = StepTestForm(
            initial={
                "version": version.number,
                "sample": json.dumps(sample.data, indent=2, ensure_ascii=False),
            }
        )
        return render(request, TEMPLATE, context)
    form = StepTestForm(request.POST)
    context["form"] = form
    if not form.is_valid():
        return render(request, TEMPLATE, context, status=400)
    try:
        result = step_tests.step_test(
            access=access, version=version, step_id=step_id, sample=form.cleaned_data["sample"]
        )
    except ValidationFailed as exc:
        for problem in exc.fields.get("sample", []):
            form.add_error("sample", problem)
        context["problems"] = [
            problem for key, ms in exc.fields.items() if key != "sample" for problem in ms
        ] or ([] if "sample" in exc.fields else [exc.message])
        return render(request, TEMPLATE, context, status=400)
    context["result"] = result
    context["cost"] = cost_text(result.cost_usd)
    context["duration"] = duration_text(result.duration_ms)
    context["output_json"] = json.dumps(result.output, indent=2, ensure_ascii=False, default=str)
    context["input_json"] = json.dumps(result.input, indent=2, ensure_ascii=False, default=str)
    return render(request, TEMPLATE, context)
