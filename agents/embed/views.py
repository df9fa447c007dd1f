"""Share pages: for the workspace's owners and admins the list of shares and one share's
settings (branding, allowed sites, the link and the widget snippet, regenerate, revoke); for
everyone in the workspace (viewers too) the visitors' conversations of a share, read-only
(owners and admins may delete one); for everyone the public chat page, its framed variant for
the widget and the logo."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents import selectors as agent_selectors
from agents.chat import live
from agents.embed import selectors, services
from agents.embed.forms import ShareCreateForm, ShareSettingsForm
from agents.models import ChatShare
from core.exceptions import ApplicationError, NotFound
from core.forms import form_add_application_error
from core.security_headers import policy_with_frame_ancestors
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Perm
from tenants.schemas import activate_public


@require_http_methods(["GET", "POST"])
def share_list(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    agents = [a for a in agent_selectors.agents_list(access=access) if a.archived_at is None]
    form = ShareCreateForm(request.POST or None, agents=agents)
    if request.method == "POST" and form.is_valid():
        try:
            share = services.share_create(
                access=access, agent_id=form.cleaned_data["agent"], title=form.cleaned_data["title"]
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, f"“{share.title}” is shared. Copy its link or widget below.")
            return redirect("share_detail", workspace_slug=access.workspace.slug, share_id=share.pk)
    shares = list(selectors.shares_list(access=access))
    return render(
        request,
        "agents/embed/list.html",
        {"shares": shares, "form": form, "agents": agents},
        status=400 if form.errors else 200,
    )


def _public_url(request: HttpRequest, workspace_slug: str, share: ChatShare, name: str) -> str:
    return request.build_absolute_uri(
        reverse(name, kwargs={"space": workspace_slug, "share_key": share.key})
    )


@require_http_methods(["GET", "POST"])
def share_detail(request: AppRequest, share_id: int) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    share = selectors.share_get(access=access, share_id=share_id)
    if share.revoked_at is not None:
        raise NotFound("This share was revoked.")
    initial = {
        "title": share.title,
        "greeting": share.greeting,
        "accent_colour": share.accent_colour,
        "show_powered_by": share.show_powered_by,
        "allowed_origins": "\n".join(share.allowed_origins),
    }
    form = ShareSettingsForm(request.POST or None, request.FILES or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["logo"]
        try:
            services.share_update(
                access=access,
                share_id=share.pk,
                title=form.cleaned_data["title"],
                greeting=form.cleaned_data["greeting"],
                accent_colour=form.cleaned_data["accent_colour"],
                show_powered_by=form.cleaned_data["show_powered_by"],
                allowed_origins=form.origins(),
                logo=upload.read(services.MAX_LOGO_BYTES + 1) if upload else None,
                remove_logo=form.cleaned_data["remove_logo"],
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, "Share settings saved.")
            return redirect("share_detail", workspace_slug=access.workspace.slug, share_id=share.pk)
    slug = access.workspace.slug
    context: dict[str, Any] = {
        "share": share,
        "form": form,
        "page_url": _public_url(request, slug, share, "share_page"),
        "frame_url": _public_url(request, slug, share, "share_frame"),
        "widget_src": request.build_absolute_uri(static("js/embed-widget.js")),
        "conversation_count": selectors.share_conversations(access=access, share=share).count(),
        # A copy of a paid listing the marketplace would refuse here (visitors only read that
        # the chat cannot answer): the owners read why.
        "visitor_refusal": selectors.shared_chat_refusal(share.agent),
        "token_api": request.build_absolute_uri(
            reverse("api-share-end-user-tokens", kwargs={"share_id": share.pk})
        ),
    }
    return render(request, "agents/embed/detail.html", context, status=400 if form.errors else 200)


@require_POST
def share_regenerate(request: AppRequest, share_id: int) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    services.share_regenerate(access=access, share_id=share_id)
    messages.success(
        request, "New link made: the old link, snippet and visitor tokens stopped working."
    )
    return redirect("share_detail", workspace_slug=access.workspace.slug, share_id=share_id)


@require_POST
def share_revoke(request: AppRequest, share_id: int) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    share = services.share_revoke(access=access, share_id=share_id)
    messages.success(request, f"“{share.title}” is no longer shared.")
    return redirect("share_list", workspace_slug=access.workspace.slug)


# ------------------------------------------------------------------ visitors' conversations

CONVERSATIONS_PAGE_SIZE = 25


@require_GET
def share_conversations(request: AppRequest, share_id: int) -> HttpResponse:
    access = page_access(request)
    share = selectors.share_for_members(access=access, share_id=share_id)
    conversations = selectors.share_conversations(access=access, share=share)
    page = Paginator(conversations, CONVERSATIONS_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [(c, selectors.visitor_label(c.end_user_id)) for c in page.object_list]
    return render(
        request,
        "agents/embed/conversations.html",
        {
            "share": share,
            "page": page,
            "rows": rows,
            "can_manage": access.can(Perm.WORKSPACE_UPDATE),
        },
    )


@require_GET
def share_conversation(request: AppRequest, share_id: int, conversation_id: int) -> HttpResponse:
    access = page_access(request)
    share = selectors.share_for_members(access=access, share_id=share_id)
    conversation = selectors.share_conversation_get(
        access=access, share=share, conversation_id=conversation_id
    )
    turns = selectors.share_conversation_turns(conversation=conversation)
    return render(
        request,
        "agents/embed/conversation.html",
        {
            "share": share,
            "conversation": conversation,
            "visitor": selectors.visitor_label(conversation.end_user_id),
            "views": [live.turn_view(turn) for turn in turns],
            "can_manage": access.can(Perm.WORKSPACE_UPDATE),
        },
    )


@require_POST
def share_conversation_delete(
    request: AppRequest, share_id: int, conversation_id: int
) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    services.share_conversation_delete(
        access=access, share_id=share_id, conversation_id=conversation_id
    )
    messages.success(request, "The visitor's conversation was deleted.")
    return redirect("share_conversations", workspace_slug=access.workspace.slug, share_id=share_id)


# ------------------------------------------------------------------ public pages


def _public(request: HttpRequest, space: str, share_key: str, *, framed: bool) -> HttpResponse:
    try:
        _, share = selectors.share_public(space=space, key=share_key)
        api = reverse(
            "api-share-visitor-conversation", kwargs={"space": space, "share_key": share_key}
        )
        tokens_api = reverse(
            "api-share-visitor-tokens", kwargs={"space": space, "share_key": share_key}
        )
        context = {
            "share": share,
            "framed": framed,
            "api": api,
            "tokens_api": tokens_api,
            "logo_url": reverse("share_logo", kwargs={"space": space, "share_key": share_key})
            if share.logo_type
            else "",
        }
        response = render(request, "agents/embed/public.html", context)
    finally:
        activate_public()
    ancestors = " ".join(share.allowed_origins) if framed and share.allowed_origins else "'none'"
    response["Content-Security-Policy"] = policy_with_frame_ancestors(ancestors)
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def share_page(request: HttpRequest, space: str, share_key: str) -> HttpResponse:
    return _public(request, space, share_key, framed=False)


@require_GET
@xframe_options_exempt  # framing is decided by the CSP's frame-ancestors (the allowed sites)
def share_frame(request: HttpRequest, space: str, share_key: str) -> HttpResponse:
    return _public(request, space, share_key, framed=True)


@require_GET
def share_logo(request: HttpRequest, space: str, share_key: str) -> HttpResponse:
    try:
        _, share = selectors.share_public(space=space, key=share_key)
    finally:
        activate_public()
    if not share.logo_type or share.logo is None:
        raise NotFound("This share has no logo.")
    response = HttpResponse(bytes(share.logo), content_type=share.logo_type)
    response["Cache-Control"] = "public, max-age=300"
    response["X-Content-Type-Options"] = "nosniff"
    return response
