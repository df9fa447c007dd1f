"""Triggers: the pages under /w/<slug>/workflows/<id>/triggers/ (BUILD permission) and the
inbound hooks under /hooks/workflows/ (no session: HMAC-signed, see workflows/triggers.py)."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents.webhooks import SIGNATURE_HEADER
from core.api import error_body
from core.exceptions import ApplicationError, NotFound, ValidationFailed
from core.forms import form_add_application_error
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.models import Workspace
from tenants.permissions import Access, Perm
from tenants.schemas import activate, activate_public
from workflows import selectors, triggers
from workflows.models import Trigger, Workflow

# --- Forms --------------------------------------------------------------------------------


class WebhookTriggerForm(forms.Form):
    name = forms.CharField(
        max_length=80,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "CRM new lead"}),
    )
    version = forms.IntegerField(
        min_value=1,
        required=False,
        label="Pinned version",
        help_text="Empty: every call runs the workflow's active version.",
    )


class ScheduleForm(forms.Form):
    name = forms.CharField(
        max_length=80, required=False, widget=forms.TextInput(attrs={"placeholder": "Weekly"})
    )
    cron = forms.CharField(
        max_length=120,
        label="Cron expression",
        help_text="Minute, hour, day of month, month, day of week. “0 9 * * 1-5” is 09:00 on "
        "weekdays; “*/15 * * * *” every 15 minutes; @daily, @weekly and @monthly work too.",
        widget=forms.TextInput(
            attrs={"placeholder": "0 9 * * 1-5", "spellcheck": "false", "class": "mono"}
        ),
    )
    timezone = forms.CharField(
        max_length=64,
        initial="UTC",
        label="Time zone",
        help_text="An IANA name such as Europe/Paris; the times above are read in it.",
        widget=forms.TextInput(attrs={"list": "timezones", "spellcheck": "false"}),
    )
    inputs = forms.CharField(
        required=False,
        label="Run inputs (JSON)",
        help_text="The same inputs every time, checked against the workflow's inputs.",
        widget=forms.Textarea(attrs={"rows": 4, "class": "mono", "placeholder": "{}"}),
    )
    version = forms.IntegerField(
        min_value=1,
        required=False,
        label="Pinned version",
        help_text="Empty: each run uses the workflow's active version at that time.",
    )

    def clean_inputs(self) -> dict[str, Any]:
        text = (self.cleaned_data.get("inputs") or "").strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise forms.ValidationError('Enter a JSON object, e.g. {"topic": "weekly report"}.')
        return value

    @classmethod
    def initial_from(cls, trigger: Trigger) -> dict[str, Any]:
        return {
            "name": trigger.name,
            "cron": trigger.cron,
            "timezone": trigger.timezone,
            "inputs": json.dumps(trigger.inputs, indent=2) if trigger.inputs else "",
            "version": trigger.version.number if trigger.version else None,
        }


# --- Pages --------------------------------------------------------------------------------


def _trigger(access: Access, workflow: Workflow, trigger_id: int) -> Trigger:
    return triggers.trigger_get(access=access, workflow=workflow, trigger_id=trigger_id)


def _back(access: Access, workflow: Workflow) -> HttpResponse:
    return redirect(
        "workflow_triggers", workspace_slug=access.workspace.slug, workflow_id=workflow.pk
    )


def _rows(access: Access, workflow: Workflow) -> list[dict[str, Any]]:
    rows = []
    for trigger in triggers.trigger_list(access=access, workflow=workflow):
        row: dict[str, Any] = {"trigger": trigger}
        if trigger.kind == Trigger.Kind.WEBHOOK:
            row["url"] = triggers.webhook_url(workspace=access.workspace, trigger=trigger)
            row["secret_hint"] = triggers.trigger_secret_hint(trigger)
        rows.append(row)
    return rows


def _list_page(
    request: AppRequest,
    access: Access,
    workflow: Workflow,
    *,
    webhook_form: WebhookTriggerForm | None = None,
    new_secret: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "workflows/triggers/list.html",
        {
            "workflow": workflow,
            "rows": _rows(access, workflow),
            "webhook_form": webhook_form or WebhookTriggerForm(),
            "new_secret": new_secret,
            "signature_header": SIGNATURE_HEADER,
        },
        status=status,
    )


@require_GET
def trigger_list(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    return _list_page(
        request, access, selectors.workflow_get(access=access, workflow_id=workflow_id)
    )


@require_POST
def webhook_create(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    form = WebhookTriggerForm(request.POST)
    if form.is_valid():
        try:
            trigger, secret = triggers.webhook_trigger_create(
                access=access,
                workflow=workflow,
                name=form.cleaned_data["name"],
                version_number=form.cleaned_data["version"],
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, "Webhook trigger created. Copy its secret now.")
            return _list_page(
                request,
                access,
                workflow,
                new_secret={
                    "trigger": trigger,
                    "secret": secret,
                    "url": triggers.webhook_url(workspace=access.workspace, trigger=trigger),
                },
                status=201,
            )
    return _list_page(request, access, workflow, webhook_form=form, status=400)


@require_POST
def webhook_rotate(request: AppRequest, workflow_id: int, trigger_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    trigger = _trigger(access, workflow, trigger_id)
    try:
        secret = triggers.webhook_trigger_rotate_secret(access=access, trigger=trigger)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return _back(access, workflow)
    messages.success(request, "New secret made; requests signed with the old one now fail.")
    return _list_page(
        request,
        access,
        workflow,
        new_secret={
            "trigger": trigger,
            "secret": secret,
            "url": triggers.webhook_url(workspace=access.workspace, trigger=trigger),
        },
    )


def _schedule_page(
    request: AppRequest,
    access: Access,
    workflow: Workflow,
    trigger: Trigger | None,
    initial: dict[str, Any] | None = None,
) -> HttpResponse:
    form = ScheduleForm(request.POST or None, initial=initial or {"timezone": "UTC"})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            triggers.schedule_save(
                access=access,
                workflow=workflow,
                trigger=trigger,
                name=data["name"],
                cron=data["cron"],
                timezone_name=data["timezone"],
                inputs=data["inputs"],
                version_number=data["version"],
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, "Schedule saved." if trigger else "Schedule created.")
            return _back(access, workflow)
    cron = form["cron"].value() or ""
    tz_name = form["timezone"].value() or "UTC"
    # A problem with the rule is already shown beside its field: no preview then.
    quiet = "cron" in form.errors or "timezone" in form.errors
    return render(
        request,
        "workflows/triggers/schedule_form.html",
        {
            "workflow": workflow,
            "trigger": trigger,
            "form": form,
            "timezones": triggers.timezone_choices(),
            **(_preview("", tz_name) if quiet else _preview(cron, tz_name)),
            "preview_quiet": quiet,
        },
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
def schedule_create(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    return _schedule_page(
        request, access, selectors.workflow_get(access=access, workflow_id=workflow_id), None
    )


@require_http_methods(["GET", "POST"])
def schedule_edit(request: AppRequest, workflow_id: int, trigger_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    trigger = _trigger(access, workflow, trigger_id)
    if trigger.kind != Trigger.Kind.SCHEDULE:
        raise NotFound("That trigger is not a schedule.")
    return _schedule_page(request, access, workflow, trigger, ScheduleForm.initial_from(trigger))


def _preview(cron: str, tz_name: str) -> dict[str, Any]:
    """The next fire times, shown in the schedule's own zone (`preview_timezone`)."""
    empty: dict[str, Any] = {"preview_times": [], "preview_error": "", "preview_timezone": "UTC"}
    if not cron.strip():
        return empty
    try:
        times = triggers.schedule_preview(cron, tz_name)
    except ValidationFailed as exc:
        problems = [m for ms in exc.fields.values() for m in ms]
        return {**empty, "preview_error": "; ".join(problems) or exc.message}
    return {**empty, "preview_times": times, "preview_timezone": tz_name.strip()}


@require_GET
def schedule_preview(request: AppRequest, workflow_id: int) -> HttpResponse:
    """The HTMX fragment under the cron field: the next three fire times, or what is wrong."""
    access = page_access(request, Perm.BUILD)
    selectors.workflow_get(access=access, workflow_id=workflow_id)
    return render(
        request,
        "workflows/triggers/_preview.html",
        _preview(request.GET.get("cron", ""), request.GET.get("timezone", "") or "UTC"),
    )


@require_POST
def trigger_toggle(request: AppRequest, workflow_id: int, trigger_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    trigger = _trigger(access, workflow, trigger_id)
    enabled = not trigger.enabled
    try:
        triggers.trigger_set_enabled(access=access, trigger=trigger, enabled=enabled)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Trigger enabled." if enabled else "Trigger disabled.")
    return _back(access, workflow)


@require_POST
def trigger_delete(request: AppRequest, workflow_id: int, trigger_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    trigger = _trigger(access, workflow, trigger_id)
    try:
        triggers.trigger_delete(access=access, trigger=trigger)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Trigger deleted.")
    return _back(access, workflow)


# --- Inbound hooks ------------------------------------------------------------------------


def _error(exc: ApplicationError) -> JsonResponse:
    return JsonResponse(error_body(exc.code, exc.message, exc.fields), status=exc.status)


def _hook_workspace(slug: str) -> Workspace:
    # A workspace scheduled for deletion (or purged: its schema is gone) takes no hooks.
    workspace = Workspace.objects.filter(
        slug=slug, is_template=False, deletion_requested_at__isnull=True, purged_at__isnull=True
    ).first()
    if workspace is None:
        raise NotFound("No enabled webhook at this address.")
    return workspace


@csrf_exempt
@require_POST
def hook_trigger(request: HttpRequest, workspace: str, token: str) -> JsonResponse:
    """Start a run: 202 with its id, 401 for a bad signature, 404 for an unknown token."""
    try:
        target = _hook_workspace(workspace)
        activate(target)
        try:
            run = triggers.webhook_trigger_fire(
                token=token, signature=request.headers.get(SIGNATURE_HEADER, ""), body=request.body
            )
        finally:
            activate_public()
    except ApplicationError as exc:
        return _error(exc)
    response = JsonResponse({"run": run.pk, "status": run.status}, status=202)
    response["Location"] = reverse("api-workflow-run", kwargs={"run_id": run.pk})
    return response


@csrf_exempt
@require_POST
def hook_resume(request: HttpRequest, workspace: str, resume_token: str) -> JsonResponse:
    """Resume a webhook-wait step with the posted JSON, signed with the workspace's webhook
    secret. 200 with the step's id; 401 for a bad signature; 404 for an unknown token."""
    try:
        target = _hook_workspace(workspace)
        activate(target)
        try:
            step = triggers.webhook_wait_resume_signed(
                workspace=target,
                token=resume_token,
                signature=request.headers.get(SIGNATURE_HEADER, ""),
                body=request.body,
            )
        finally:
            activate_public()
    except ApplicationError as exc:
        return _error(exc)
    return JsonResponse({"step": step.pk, "run": step.run_id, "status": step.status})
