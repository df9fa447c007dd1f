"""Evaluation pages: datasets, suites, starting an evaluation, its live results, comparing two
evaluations, and the workspace's release gate."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from agents.selectors import agent_choices
from core.exceptions import ApplicationError
from core.forms import form_add_application_error
from evals import selectors, services
from evals.forms import (
    CompareForm,
    DatasetForm,
    GateForm,
    StartForm,
    SuiteForm,
    UpgradeGateForm,
)
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Access, Perm
from workflows.selectors import workflow_list


def _suite_form(access: Access, data: Any = None) -> SuiteForm:
    datasets = [(d.pk, d.name) for d in selectors.datasets_list(access=access)]
    return SuiteForm(data, datasets=datasets)


def _start_form(access: Access, data: Any = None) -> StartForm:
    suites = [(s.pk, s.name) for s in selectors.suites_list(access=access)]
    workflows = [(w.pk, w.name) for w in workflow_list(access=access)]
    return StartForm(data, suites=suites, agents=agent_choices(access=access), workflows=workflows)


def _index(request: AppRequest, access: Access, status: int = 200, **forms: Any) -> HttpResponse:
    can_build = access.can(Perm.BUILD)
    policy = selectors.gate_policy()
    context = {
        "datasets": selectors.datasets_list(access=access),
        "suites": selectors.suites_list(access=access),
        "evaluations": selectors.evaluations_list(access=access)[:50],
        "can_build": can_build,
        "can_run": access.can(Perm.RUN),
        "can_gate": access.can(Perm.WORKSPACE_UPDATE),
        "policy": policy,
        "dataset_form": forms.get("dataset_form") or DatasetForm(),
        "suite_form": forms.get("suite_form") or _suite_form(access),
        "start_form": forms.get("start_form") or _start_form(access),
        "gate_form": GateForm(initial={"require_for_publish": policy.require_for_publish}),
        "upgrade_gate_form": UpgradeGateForm(
            initial={"require_for_upgrade": policy.require_for_upgrade}
        ),
        "compare_form": CompareForm(),
    }
    return render(request, "evals/index.html", context, status=status)


@require_GET
def evals_index(request: AppRequest) -> HttpResponse:
    return _index(request, page_access(request))


@require_POST
def dataset_upload(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    form = DatasetForm(request.POST, request.FILES)
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            dataset = services.dataset_import(
                access=access,
                name=form.cleaned_data["name"],
                filename=upload.name or "",
                data=upload.read(),
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, f"Dataset “{dataset.name}” uploaded.")
            return redirect(
                "evals_dataset", workspace_slug=access.workspace.slug, dataset_id=dataset.pk
            )
    return _index(request, access, status=400, dataset_form=form)


@require_GET
def dataset_detail(request: AppRequest, dataset_id: int) -> HttpResponse:
    access = page_access(request)
    dataset = selectors.dataset_get(access=access, dataset_id=dataset_id)
    return render(
        request, "evals/dataset.html", {"dataset": dataset, "cases": dataset.cases.all()[:500]}
    )


@require_POST
def suite_create(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    form = _suite_form(access, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            suite = services.suite_create(
                access=access,
                name=data["name"],
                dataset_id=data["dataset"],
                evaluators_spec=data["evaluators"],
                pass_threshold=data["pass_threshold"],
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
            if not form.errors:
                form.add_error(None, exc.message)
            for key, problems in exc.fields.items():
                if key.startswith("evaluators"):
                    form.add_error("evaluators", problems[0])
        else:
            messages.success(request, f"Suite “{suite.name}” saved.")
            return redirect("evals", workspace_slug=access.workspace.slug)
    return _index(request, access, status=400, suite_form=form)


@require_POST
def evaluation_start(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.RUN)
    form = _start_form(access, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            evaluation = services.evaluation_start(
                access=access,
                suite_id=data["suite"],
                agent_id=data["agent"],
                workflow_id=data["workflow"],
                version_number=data["version"],
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            return redirect(
                "evals_evaluation",
                workspace_slug=access.workspace.slug,
                evaluation_id=evaluation.pk,
            )
    return _index(request, access, status=400, start_form=form)


@require_POST
def gates(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    form = GateForm(request.POST)
    form.is_valid()
    required = bool(form.cleaned_data.get("require_for_publish"))
    upgrades = UpgradeGateForm(request.POST)
    upgrades.is_valid()
    for_upgrade = bool(upgrades.cleaned_data.get("require_for_upgrade"))
    services.gate_policy_set(
        access=access, require_for_publish=required, require_for_upgrade=for_upgrade
    )
    messages.success(
        request,
        (
            "Publishing now requires a passing evaluation."
            if required
            else "Publishing no longer requires an evaluation."
        )
        + (" Automatic upgrades of installs wait for a passing evaluation." if for_upgrade else ""),
    )
    return redirect("evals", workspace_slug=access.workspace.slug)


@require_GET
def evaluation_detail(request: AppRequest, evaluation_id: int) -> HttpResponse:
    """The evaluation's page; HTMX polls its `progress` partial until it finishes."""
    access = page_access(request)
    evaluation = selectors.evaluation_get(access=access, evaluation_id=evaluation_id)
    context = {
        "evaluation": evaluation,
        "results": selectors.evaluation_results(evaluation=evaluation),
        "others": selectors.evaluations_list(access=access)
        .filter(suite=evaluation.suite, target=evaluation.target)
        .exclude(pk=evaluation.pk)[:20],
    }
    template = "evals/evaluation.html"
    if request.htmx:
        template += "#progress"
    return render(request, template, context)


@require_GET
def compare(request: AppRequest) -> HttpResponse:
    access = page_access(request)
    form = CompareForm(request.GET)
    if not form.is_valid():
        messages.error(request, "Choose two evaluations to compare.")
        return redirect("evals", workspace_slug=access.workspace.slug)
    left = selectors.evaluation_get(access=access, evaluation_id=form.cleaned_data["left"])
    right = selectors.evaluation_get(access=access, evaluation_id=form.cleaned_data["right"])
    rows = selectors.comparison_rows(left=left, right=right)
    return render(request, "evals/compare.html", {"left": left, "right": right, "rows": rows})
