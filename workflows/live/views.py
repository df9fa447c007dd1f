"""Run pages: start a run from a form generated from the version's inputs, the run history with
filters, and the run page (live over the websocket, see consumers.py) with its actions —
cancel, approve or reject, retry a step, resume, re-run.

Every action is a POST that works without JavaScript (it redirects back with a message); with
htmx it answers with the run's fragments as out-of-band swaps plus a notice, so the page is
right even before the websocket's own update arrives.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from core.exceptions import ApplicationError, NotFound, PermissionDenied, ValidationFailed
from core.forms import form_add_application_error
from core.http import int_or_none
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Access, Perm
from workflows import run_selectors, runs, selectors
from workflows.live import render as run_render
from workflows.live.forms import DecisionForm, RunFilterForm, RunStartForm
from workflows.models import StepRun, WorkflowRun, WorkflowVersion

PAGE_SIZE = 25


# ------------------------------------------------------------------ helpers


def _step(run: WorkflowRun, step_id: int) -> StepRun:
    step = run_selectors.step_get(step_id)
    if step.run_id != run.pk:
        raise NotFound("No such step in this run.")
    return step


def _answer(
    request: AppRequest,
    access: Access,
    run_id: int,
    *,
    message: str,
    ok: bool,
    status: int = 200,
) -> HttpResponse:
    """After an action: with htmx, the run as it is now (out-of-band fragments) and a notice;
    without, back to the run page with the message as a toast."""
    if request.htmx:
        view = run_render.run_view(access=access, run_id=run_id)
        html = run_render.render_full(
            view, notice=message, notice_level="success" if ok else "error"
        )
        return HttpResponse(html, status=status)
    (messages.success if ok else messages.error)(request, message)
    return redirect("workflow_run_detail", workspace_slug=access.workspace.slug, run_id=run_id)


def _refused(
    request: AppRequest, access: Access, run_id: int, exc: ApplicationError
) -> HttpResponse:
    if isinstance(exc, PermissionDenied):
        raise exc  # the error middleware answers 403
    return _answer(request, access, run_id, message=exc.message, ok=False, status=exc.status)


# ------------------------------------------------------------------ start


@require_http_methods(["GET", "POST"])
def workflow_run_start(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.RUN)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    versions = list(
        WorkflowVersion.objects.filter(workflow=workflow).defer("definition").order_by("-number")
    )
    if not versions:
        raise NotFound("This workflow has no version.")
    posted = request.method == "POST"
    number = int_or_none(request.POST.get("version") if posted else request.GET.get("version"))
    selected = (
        next((v for v in versions if v.number == number), None)
        or next((v for v in versions if v.pk == workflow.active_version_id), None)
        or versions[0]
    )

    selected = selectors.version_get(workflow, selected.number)
    definition = selected.definition if isinstance(selected.definition, dict) else {}
    problems: list[str] = []  # a draft saved incomplete cannot run: say why before the form
    try:
        runs.version_require_runnable(workflow=workflow, version=selected)
    except ValidationFailed as exc:
        problems = exc.fields.get("definition") or [exc.message]
    # "load" is the no-JavaScript way to switch versions: show that version's inputs.
    data = request.POST if posted and "load" not in request.POST else None
    form = RunStartForm(
        data,
        declared=definition.get("inputs") or {},
        versions=versions,
        selected=selected,
        active_id=workflow.active_version_id,
    )
    if data is not None and form.is_valid():
        try:
            run = runs.run_start(
                workflow=workflow,
                inputs=form.inputs(),
                trigger=WorkflowRun.TriggerKind.MANUAL,
                version=selected,
                access=access,
            )
        except ValidationFailed as exc:
            if "inputs" in exc.fields:
                form.add_input_errors(exc.fields["inputs"])
            else:
                form_add_application_error(form, exc)
        except PermissionDenied:
            raise  # the error middleware answers 403
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            return redirect(
                "workflow_run_detail", workspace_slug=access.workspace.slug, run_id=run.pk
            )
    context = {
        "form": form,
        "workflow": workflow,
        "selected": selected,
        "problems": problems,
        "slug": access.workspace.slug,
        "workflow_url": run_render.workflow_url(access.workspace.slug, workflow.pk),
    }
    template = "workflows/runs/start.html"
    if request.htmx and not posted:
        template += "#start_form"
    return render(request, template, context, status=400 if form.errors else 200)


# ------------------------------------------------------------------ history


@require_GET
def workflow_run_list(request: AppRequest, workflow_id: int | None = None) -> HttpResponse:
    access = page_access(request)
    slug = access.workspace.slug
    workflow = (
        selectors.workflow_get(access=access, workflow_id=workflow_id)
        if workflow_id is not None
        else None
    )
    choices = (
        None
        if workflow is not None
        else list(selectors.workflow_list(access=access, include_archived=True))
    )
    form = RunFilterForm(request.GET or None, workflows=choices)
    filters = form.filters()
    chosen_id = filters.pop("workflow_id")
    if workflow is None and chosen_id is not None:
        workflow_filter = next((w for w in choices or [] if w.pk == chosen_id), None)
    else:
        workflow_filter = workflow
    found = run_selectors.run_list(access=access, workflow=workflow_filter, **filters).defer(
        "inputs", "output", "error", "version__definition"
    )
    page = Paginator(found, PAGE_SIZE).get_page(request.GET.get("page"))
    list_url = (
        run_render.reverse_url("workflow_run_list", workspace_slug=slug, workflow_id=workflow.pk)
        if workflow is not None
        else run_render.reverse_url("workflow_run_list", workspace_slug=slug)
    )
    context = {
        "form": form,
        "workflow": workflow,
        "page": page,
        "rows": [run_render.RunRow(run) for run in page.object_list],
        "filtered": any(v not in (None, "") for v in filters.values()) or chosen_id is not None,
        "prev_query": form.query(page.previous_page_number()) if page.has_previous() else "",
        "next_query": form.query(page.next_page_number()) if page.has_next() else "",
        "list_url": list_url,
        "slug": slug,
        "can_run": access.can(Perm.RUN),
        "workflow_url": run_render.workflow_url(slug, workflow.pk) if workflow else None,
    }
    template = "workflows/runs/list.html"
    if request.htmx and not request.htmx.boosted:
        template += "#results"
    return render(request, template, context)


# ------------------------------------------------------------------ the run


@require_GET
def workflow_run_detail(request: AppRequest, run_id: int) -> HttpResponse:
    access = page_access(request)
    view = run_render.run_view(access=access, run_id=run_id)
    return render(request, "workflows/runs/detail.html", run_render.page_context(view))


@require_POST
def workflow_run_cancel(request: AppRequest, run_id: int) -> HttpResponse:
    access = page_access(request, Perm.RUN)
    run = run_selectors.run_get(access=access, run_id=run_id)
    try:
        runs.run_cancel(access=access, run=run)
    except ApplicationError as exc:
        return _refused(request, access, run.pk, exc)
    return _answer(request, access, run.pk, message="Run cancelled.", ok=True)


@require_POST
def workflow_run_resume(request: AppRequest, run_id: int) -> HttpResponse:
    access = page_access(request, Perm.RUN)
    run = run_selectors.run_get(access=access, run_id=run_id)
    try:
        runs.run_resume(access=access, run=run)
    except ApplicationError as exc:
        return _refused(request, access, run.pk, exc)
    return _answer(
        request,
        access,
        run.pk,
        message="Resumed: the failed steps run again; steps that succeeded are kept.",
        ok=True,
    )


@require_POST
def workflow_run_rerun(request: AppRequest, run_id: int) -> HttpResponse:
    access = page_access(request, Perm.RUN)
    run = run_selectors.run_get(access=access, run_id=run_id)
    try:
        new = runs.run_rerun(access=access, run=run)
    except ApplicationError as exc:
        return _refused(request, access, run.pk, exc)
    url = run_render.reverse_url(
        "workflow_run_detail", workspace_slug=access.workspace.slug, run_id=new.pk
    )
    if request.htmx:
        return HttpResponseClientRedirect(url)
    messages.success(request, f"Re-run of #{run.pk} started with the same inputs.")
    return redirect(url)


@require_POST
def workflow_step_retry(request: AppRequest, run_id: int, step_id: int) -> HttpResponse:
    access = page_access(request, Perm.RUN)
    run = run_selectors.run_get(access=access, run_id=run_id)
    step = _step(run, step_id)
    try:
        runs.step_retry(access=access, step=step)
    except ApplicationError as exc:
        return _refused(request, access, run.pk, exc)
    return _answer(request, access, run.pk, message=f"Step “{step.node_id}” runs again.", ok=True)


@require_POST
def workflow_step_decide(request: AppRequest, run_id: int, step_id: int) -> HttpResponse:
    """Approve or reject a waiting approval step (the submit button says which)."""
    access = page_access(request, Perm.RUN)
    run = run_selectors.run_get(access=access, run_id=run_id)
    step = _step(run, step_id)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        message = "; ".join(str(e) for errors in form.errors.values() for e in errors)
        return _answer(request, access, run.pk, message=message, ok=False, status=400)
    approved = form.cleaned_data["decision"] == "approve"
    try:
        runs.approval_decide(
            access=access, step=step, approved=approved, comment=form.cleaned_data["comment"]
        )
    except ApplicationError as exc:
        return _refused(request, access, run.pk, exc)
    return _answer(
        request,
        access,
        run.pk,
        message=f"{'Approved' if approved else 'Rejected'} “{step.node_id}”.",
        ok=True,
    )
