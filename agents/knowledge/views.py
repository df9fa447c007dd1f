"""Knowledge base pages: list, create, detail (documents with live progress, upload, try a
search), delete a document or a base, retry a failed document."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents.embeddings import EmbeddingError
from agents.knowledge import selectors, services
from agents.knowledge.forms import KnowledgeBaseForm, SearchForm, UploadForm
from agents.knowledge.parsers import ACCEPTED
from agents.models import KnowledgeBase
from core.exceptions import ApplicationError, NotFound
from core.forms import form_add_application_error
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Access, Perm


def _to_detail(access: Access, base_id: int) -> HttpResponse:
    return redirect(
        "knowledge_detail", workspace_slug=access.workspace.slug, knowledge_base_id=base_id
    )


def _documents_context(access: Access, base: KnowledgeBase) -> dict[str, Any]:
    documents = list(selectors.documents_list(access=access, knowledge_base_id=base.pk))
    return {
        "base": base,
        "documents": documents,
        "polling": selectors.ingestion_in_progress(documents),
        "passage_total": sum(d.chunks_done for d in documents if d.status == "ready"),
        "can_build": access.can(Perm.BUILD),
    }


def _detail(
    request: AppRequest,
    access: Access,
    base: KnowledgeBase,
    *,
    upload_form: UploadForm | None = None,
    status: int = 200,
) -> HttpResponse:
    search_form = SearchForm(request.GET if "q" in request.GET else None)
    passages = None
    if search_form.is_bound and search_form.is_valid():
        try:
            passages = selectors.knowledge_search(
                knowledge_base_ids=[base.pk],
                query=search_form.cleaned_data["q"],
                top_k=search_form.cleaned_data["top_k"] or 5,
            )
        except EmbeddingError as exc:
            search_form.add_error(None, f"Search is unavailable: {exc}")
    context = {
        **_documents_context(access, base),
        "upload_form": upload_form or UploadForm(),
        "search_form": search_form,
        "passages": passages,
        "accepted": ACCEPTED,
        "max_upload_bytes": settings.KNOWLEDGE_MAX_UPLOAD_BYTES,
        "configured_embedder": selectors.configured_embedder_name(),
    }
    template = "agents/knowledge/detail.html"
    if request.htmx and request.htmx.target == "search-results":
        template += "#search-results"
    return render(request, template, context, status=400 if search_form.errors else status)


@require_GET
def knowledge_list(request: AppRequest) -> HttpResponse:
    access = page_access(request)
    return render(
        request,
        "agents/knowledge/list.html",
        {
            "bases": selectors.knowledge_bases_list(access=access),
            "can_build": access.can(Perm.BUILD),
        },
    )


@require_http_methods(["GET", "POST"])
def knowledge_create(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    form = KnowledgeBaseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            base = services.knowledge_base_create(access=access, **form.cleaned_data)
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, f"Knowledge base “{base.name}” created. Upload documents.")
            return _to_detail(access, base.pk)
    return render(
        request, "agents/knowledge/form.html", {"form": form}, status=400 if form.errors else 200
    )


@require_GET
def knowledge_detail(request: AppRequest, knowledge_base_id: int) -> HttpResponse:
    access = page_access(request)
    return _detail(
        request,
        access,
        selectors.knowledge_base_get(access=access, knowledge_base_id=knowledge_base_id),
    )


@require_GET
def knowledge_documents(request: AppRequest, knowledge_base_id: int) -> HttpResponse:
    """The documents table, polled by the page while anything is queued or processing."""
    access = page_access(request)
    base = selectors.knowledge_base_get(access=access, knowledge_base_id=knowledge_base_id)
    return render(
        request, "agents/knowledge/detail.html#documents", _documents_context(access, base)
    )


@require_POST
def knowledge_upload(request: AppRequest, knowledge_base_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    base = selectors.knowledge_base_get(access=access, knowledge_base_id=knowledge_base_id)
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _detail(request, access, base, upload_form=form, status=400)
    queued: list[str] = []
    for upload in form.cleaned_data["file"]:
        try:
            document = services.document_upload(
                access=access, knowledge_base_id=base.pk, file=upload
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            queued.append(document.filename)
    if queued:
        messages.success(request, f"Processing {', '.join(queued)}: progress shows below.")
    if form.errors:
        return _detail(request, access, base, upload_form=form, status=400)
    return _to_detail(access, base.pk)


@require_POST
def knowledge_document_delete(
    request: AppRequest, knowledge_base_id: int, document_id: int
) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    base = selectors.knowledge_base_get(access=access, knowledge_base_id=knowledge_base_id)
    filename = services.document_delete(
        access=access, knowledge_base_id=base.pk, document_id=document_id
    )
    messages.success(request, f"“{filename}” deleted; agents no longer find its passages.")
    return _to_detail(access, base.pk)


@require_POST
def knowledge_document_retry(
    request: AppRequest, knowledge_base_id: int, document_id: int
) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    base = selectors.knowledge_base_get(access=access, knowledge_base_id=knowledge_base_id)
    try:
        document = services.document_retry(
            access=access, knowledge_base_id=base.pk, document_id=document_id
        )
    except NotFound:
        raise  # the error middleware answers 404
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Processing “{document.filename}” again.")
    return _to_detail(access, base.pk)


@require_POST
def knowledge_delete(request: AppRequest, knowledge_base_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    base = selectors.knowledge_base_get(access=access, knowledge_base_id=knowledge_base_id)
    try:
        name = services.knowledge_base_delete(access=access, knowledge_base_id=base.pk)
    except NotFound:
        raise  # the error middleware answers 404
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return _to_detail(access, base.pk)
    messages.success(request, f"Knowledge base “{name}” deleted.")
    return redirect("knowledge_list", workspace_slug=access.workspace.slug)
