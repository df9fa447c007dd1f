"""Agent pages: list, create, edit (a new version per save), restore, run and watch a run."""

from __future__ import annotations

import csv
from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from agents import references, selectors, services
from agents import usage as usage_reports
from agents.cache import responses as cache
from agents.cache.calibration import semantic_accuracy_statement
from agents.embed import selectors as embed_selectors
from agents.forms import (
    AgentForm,
    AliasForm,
    AliasTargetFormSet,
    BudgetForm,
    CheckForm,
    CredentialForm,
    RunForm,
)
from agents.gateway import aliases, budgets
from agents.gateway import credentials as provider_credentials
from agents.models import WorkspaceBudget
from agents.runs import selectors as run_selectors
from core.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied
from core.forms import form_add_application_error
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Perm


def agent_list(request: AppRequest) -> HttpResponse:
    access = page_access(request)
    return render(
        request,
        "agents/list.html",
        {
            "agents": selectors.agents_list(access=access),
            "can_build": access.can(Perm.BUILD),
        },
    )


def _tell_semantic_accuracy(request: AppRequest, *, was_on: bool, now_on: Any) -> None:
    """Whoever turns the semantic tier on is told how accurate it was measured to be."""
    if now_on and not was_on:
        messages.info(request, "Semantic cache on. " + semantic_accuracy_statement())


@require_http_methods(["GET", "POST"])
def agent_create(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    form = AgentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}
        try:
            agent = services.agent_create(access=access, **data)
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, f"Agent “{agent.name}” created (version 1).")
            _tell_semantic_accuracy(request, was_on=False, now_on=data.get("cache_semantic"))
            return redirect("agent_detail", workspace_slug=access.workspace.slug, agent_id=agent.pk)
    return render(
        request,
        "agents/form.html",
        {"form": form, "agent": None},
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
def agent_detail(request: AppRequest, agent_id: int) -> HttpResponse:
    access = page_access(request)
    agent = selectors.agent_get(access=access, agent_id=agent_id)
    form = AgentForm(
        request.POST or None, initial=AgentForm.initial_from(agent, agent.current_version)
    )
    if request.method == "POST":
        if not access.can(Perm.BUILD):
            raise PermissionDenied(f"Your role ({access.role}) cannot edit agents.")
        if form.is_valid():
            try:
                services.agent_update(access=access, agent_id=agent.pk, **form.cleaned_data)
            except ApplicationError as exc:
                form_add_application_error(form, exc)
            else:
                messages.success(request, "Saved.")
                was_on = bool(agent.current_version and agent.current_version.cache_semantic)
                _tell_semantic_accuracy(
                    request, was_on=was_on, now_on=form.cleaned_data.get("cache_semantic")
                )
                return redirect(
                    "agent_detail", workspace_slug=access.workspace.slug, agent_id=agent.pk
                )
    return render(
        request,
        "agents/detail.html",
        {
            "agent": agent,
            "form": form,
            "run_form": RunForm(),
            "versions": agent.versions.all()[:20],
            "runs": agent.runs.select_related("version")[:10],
            "can_build": access.can(Perm.BUILD),
            "can_run": access.can(Perm.RUN),
            "can_expose_a2a": access.can(Perm.WORKSPACE_UPDATE),
            "uses": references.uses_of(agent.pk, workspace_slug=access.workspace.slug),
            "shares": embed_selectors.agent_shares(access=access, agent_id=agent.pk),
        },
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
def agent_archive(request: AppRequest, agent_id: int) -> HttpResponse:
    """GET: the confirmation, listing the workflows that use the agent (their agent steps fail
    once it is archived); POST: archive it."""
    access = page_access(request, Perm.BUILD)
    agent = selectors.agent_get(access=access, agent_id=agent_id)
    if request.method == "POST":
        try:
            services.agent_archive(access=access, agent_id=agent.pk)
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Agent “{agent.name}” archived.")
            return redirect("agent_list", workspace_slug=access.workspace.slug)
    return render(
        request,
        "agents/archive.html",
        {
            "agent": agent,
            "uses": references.uses_of(agent.pk, workspace_slug=access.workspace.slug),
        },
    )


@require_POST
def agent_restore(request: AppRequest, agent_id: int, number: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    agent = selectors.agent_get(access=access, agent_id=agent_id)
    try:
        version = services.agent_restore_version(access=access, agent_id=agent.pk, number=number)
        messages.success(request, f"Version {number} restored as version {version.number}.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("agent_detail", workspace_slug=access.workspace.slug, agent_id=agent.pk)


@require_POST
def agent_run(request: AppRequest, agent_id: int) -> HttpResponse:
    access = page_access(request, Perm.RUN)
    agent = selectors.agent_get(access=access, agent_id=agent_id)
    form = RunForm(request.POST)
    run = None
    if form.is_valid():
        try:
            run = services.agent_run_start(
                access=access, agent_id=agent.pk, input=form.cleaned_data["input"]
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
    if run is None:
        return render(request, "agents/_run.html", {"agent": agent, "run_form": form}, status=400)
    if not request.htmx:
        return redirect("agent_detail", workspace_slug=access.workspace.slug, agent_id=agent.pk)
    return render(request, "agents/_run.html", {"agent": agent, "run": run, "run_form": RunForm()})


def agent_run_status(request: AppRequest, agent_id: int, run_id: int) -> HttpResponse:
    """The run card, polled by the page every second until the run has finished (then with
    the Run form again, so the next input can be tried without a reload)."""
    access = page_access(request)
    run = selectors.agent_run_get(access=access, agent_id=agent_id, run_id=run_id)
    return render(
        request,
        "agents/_run.html",
        {
            "agent": run.agent,
            "run": run,
            "run_form": RunForm(),
            "polled": True,
            "answered": run_selectors.answered_by_runs(run_ids=[run.pk]).get(run.pk),
        },
    )


@require_POST
def agent_run_cache_wrong(request: AppRequest, agent_id: int, run_id: int) -> HttpResponse:
    """ "Wrong answer" on a run served from the cache: the entry is evicted and counted."""
    access = page_access(request, Perm.RUN)
    try:
        run = cache.run_cache_report(access=access, agent_id=agent_id, run_id=run_id)
    except Conflict as exc:
        return HttpResponse(exc.message, status=409)
    if request.htmx:
        context = {"agent": run.agent, "run": run, "run_form": RunForm()}
        return render(request, "agents/_run.html", context)
    messages.success(request, "Thanks: that answer will not be served from the cache again.")
    return redirect("agent_detail", workspace_slug=access.workspace.slug, agent_id=agent_id)


@require_http_methods(["GET", "POST"])
def providers(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    form = CredentialForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            credential = provider_credentials.credential_create(access=access, **form.cleaned_data)
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, f"Credential “{credential.name}” saved.")
            return redirect("providers", workspace_slug=access.workspace.slug)
    return render(
        request,
        "agents/providers.html",
        {
            "credentials": provider_credentials.credentials_list(access=access),
            "form": form,
        },
        status=400 if form.errors else 200,
    )


@require_POST
def provider_delete(request: AppRequest, credential_id: int) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    try:
        provider_credentials.credential_delete(access=access, credential_id=credential_id)
        messages.success(request, "Credential removed.")
    except NotFound:
        raise  # the error middleware answers 404
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("providers", workspace_slug=access.workspace.slug)


@require_POST
def provider_check(request: AppRequest, credential_id: int) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    form = CheckForm(request.POST)
    result = None
    if form.is_valid():
        result = provider_credentials.credential_check(
            access=access, credential_id=credential_id, model=form.cleaned_data["model"]
        )
    return render(
        request,
        "agents/_check.html",
        {"result": result, "form": form},
        status=200 if result is not None else 400,
    )


def usage(request: AppRequest) -> HttpResponse:
    access = page_access(request)
    days = 30
    if request.GET.get("format") == "csv":
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = (
            f'attachment; filename="usage-{access.workspace.slug}-last-{days}-days.csv"'
        )
        writer = csv.writer(response)
        writer.writerow(usage_reports.CSV_HEADER)
        writer.writerows(usage_reports.usage_csv_rows(access=access, days=days))
        return response
    report = usage_reports.usage_report(access=access, days=days)
    peak = report.max_day_cost
    bars = []
    for index, day in enumerate(report.days):
        height = max(int(day["cost"] / peak * 100), 1) if peak and day["cost"] else 0
        bars.append({**day, "x": index * 10 + 1, "y": 105 - height, "height": height})
    budget = WorkspaceBudget.objects.first()
    cap = budget.monthly_cap_usd if budget else None
    return render(
        request,
        "agents/usage.html",
        {
            "report": report,
            "bars": bars,
            "days": days,
            "chart_width": days * 10,
            "cap": cap,
            "month_spend": budgets.month_spend(),
            "can_set_budget": access.can(Perm.WORKSPACE_UPDATE),
            "budget_form": BudgetForm(initial={"monthly_cap_usd": cap}),
        },
    )


@require_POST
def usage_budget(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    form = BudgetForm(request.POST)
    if form.is_valid():
        cap = form.cleaned_data["monthly_cap_usd"]
        budgets.budget_set(access=access, monthly_cap_usd=cap)
        messages.success(request, f"Monthly budget set to ${cap}." if cap else "Budget removed.")
    else:
        messages.error(request, f"Monthly budget: {form.errors['monthly_cap_usd'][0]}")
    return redirect("usage", workspace_slug=access.workspace.slug)


def model_aliases(request: AppRequest) -> HttpResponse:
    access = page_access(request)
    return render(
        request,
        "agents/aliases.html",
        {
            "aliases": aliases.aliases_list(access=access),
            "can_edit": access.can(Perm.WORKSPACE_UPDATE),
        },
    )


def _target_specs(formset: Any) -> tuple[list[aliases.TargetSpec], list[Any]]:
    """The filled, undeleted rows in order, and the forms they came from (for errors)."""
    specs, forms_used = [], []
    for form in formset.forms:
        data = form.cleaned_data
        if not data or data.get("DELETE") or not data.get("model", "").strip():
            continue
        specs.append(
            aliases.TargetSpec(
                kind=data["kind"], model=data["model"], credential_id=data.get("credential")
            )
        )
        forms_used.append(form)
    return specs, forms_used


def _place_alias_errors(exc: ApplicationError, form: AliasForm, rows: list[Any]) -> None:
    """`targets.2.model` errors go beside that row's field; the rest above the form."""
    if not exc.fields:
        form.add_error(None, exc.message)
    for key, problems in exc.fields.items():
        parts = key.split(".")
        for problem in problems:
            if len(parts) == 3 and parts[0] == "targets" and parts[1].isdigit():
                rows[int(parts[1]) - 1].add_error(parts[2], problem)
            else:
                form.add_error(key if key in form.fields else None, problem)


@require_http_methods(["GET", "POST"])
def model_alias_edit(request: AppRequest, alias_id: int | None = None) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    alias = None
    if alias_id is not None:
        alias = aliases.alias_get(access=access, alias_id=alias_id)
    credentials = [
        (c.pk, f"{c.name} ({c.get_kind_display()})")
        for c in provider_credentials.credentials_list(access=access)
    ]
    initial_targets = (
        [
            {"kind": t.kind, "model": t.model, "credential": t.credential_id}
            for t in alias.targets.all()
        ]
        if alias
        else [{"kind": "offline", "model": "demo"}]
    )
    form = AliasForm(
        request.POST or None,
        initial={"name": alias.name, "description": alias.description} if alias else None,
    )
    formset = AliasTargetFormSet(
        request.POST or None,
        # Bound rows are judged on what was posted, not on how they differ from the initial.
        initial=None if request.method == "POST" else initial_targets,
        prefix="targets",
        form_kwargs={"credentials": credentials},
    )
    if request.method == "POST" and form.is_valid() and formset.is_valid():
        specs, forms_used = _target_specs(formset)
        try:
            saved = aliases.alias_save(
                access=access,
                alias_id=alias.pk if alias else None,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                targets=specs,
            )
        except ApplicationError as exc:
            _place_alias_errors(exc, form, forms_used)
        else:
            messages.success(request, f"Model alias “{saved.name}” saved.")
            return redirect("model_aliases", workspace_slug=access.workspace.slug)
    return render(
        request,
        "agents/alias_form.html",
        {"alias": alias, "form": form, "formset": formset},
        status=400 if request.method == "POST" else 200,
    )


@require_POST
def model_alias_delete(request: AppRequest, alias_id: int) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    try:
        aliases.alias_delete(access=access, alias_id=alias_id)
        messages.success(request, "Model alias removed.")
    except NotFound:
        raise  # the error middleware answers 404
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("model_aliases", workspace_slug=access.workspace.slug)


def agent_dashboard_card(request: AppRequest) -> HttpResponse:
    """The overview page's agents card (loaded into the dashboard by htmx)."""
    access = page_access(request)
    return render(
        request,
        "agents/_dashboard_card.html",
        {"summary": selectors.agent_summary(access=access)},
    )
