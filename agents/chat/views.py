"""Chat pages: the conversation list (search, everyone's for owners and admins), starting a
conversation, the conversation itself (live over the websocket; `send` is the no-JavaScript
fallback of its form) and deleting one."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from agents.chat import live, selectors, services
from agents.chat.forms import ConversationStartForm, QuestionForm
from agents.models import Conversation
from core.exceptions import ApplicationError, Conflict
from core.forms import form_add_application_error
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Access, Perm

PAGE_SIZE = 25


def conversation_list(request: AppRequest) -> HttpResponse:
    access = page_access(request)
    query = request.GET.get("q", "").strip()[:200]
    can_see_all = selectors.can_see_everyones(access=access)
    everyone = can_see_all and request.GET.get("who") == "all"
    conversations = selectors.conversations_list(access=access, query=query, everyone=everyone)
    page = Paginator(conversations, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "agents/chat/list.html",
        {
            "page": page,
            "query": query,
            "everyone": everyone,
            "can_see_all": can_see_all,
            "can_chat": access.can(Perm.RUN),
            "owners": selectors.owner_names(page.object_list) if everyone else {},
        },
    )


@require_http_methods(["GET", "POST"])
def conversation_new(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.RUN)
    agents = list(selectors.chat_agents(access=access))
    form = ConversationStartForm(
        request.POST or None, agents=agents, initial={"agent": request.GET.get("agent")}
    )
    if request.method == "POST" and form.is_valid():
        try:
            conversation = services.conversation_start(
                access=access,
                agent_id=form.cleaned_data["agent"],
                question=form.cleaned_data["question"],
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            return redirect(
                "conversation_detail",
                workspace_slug=access.workspace.slug,
                conversation_id=conversation.pk,
            )
    return render(
        request,
        "agents/chat/new.html",
        {"form": form, "agents": agents},
        status=400 if form.errors else 200,
    )


def _page(
    request: AppRequest, access: Access, conversation: Conversation, form: QuestionForm
) -> HttpResponse:
    turns = selectors.conversation_turns(conversation)
    mine = access.user is not None and conversation.created_by_id == access.user.pk
    context: dict[str, Any] = {
        "conversation": conversation,
        "views": [live.turn_view(turn) for turn in turns],
        "form": form,
        "mine": mine,
        "can_send": mine and access.can(Perm.RUN) and conversation.agent.archived_at is None,
        "owner": None
        if mine
        else selectors.owner_names([conversation]).get(
            conversation.created_by_id or 0, "a former member"
        ),
    }
    return render(request, "agents/chat/detail.html", context, status=400 if form.errors else 200)


def conversation_detail(request: AppRequest, conversation_id: int) -> HttpResponse:
    access = page_access(request)
    conversation = selectors.conversation_get(access=access, conversation_id=conversation_id)
    services.turns_expire_stale(conversation_id=conversation.pk)
    return _page(request, access, conversation, QuestionForm())


@require_POST
def conversation_send(request: AppRequest, conversation_id: int) -> HttpResponse:
    """The message form without JavaScript: queue the turn and show the page again (it shows
    the answer once the worker saved it). With JavaScript the form goes over the websocket."""
    access = page_access(request, Perm.RUN)
    conversation = selectors.conversation_get(access=access, conversation_id=conversation_id)
    form = QuestionForm(request.POST)
    if form.is_valid():
        try:
            services.turn_start(
                access=access,
                conversation_id=conversation.pk,
                question=form.cleaned_data["question"],
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            return redirect(
                "conversation_detail",
                workspace_slug=access.workspace.slug,
                conversation_id=conversation.pk,
            )
    return _page(request, access, conversation, form)


@require_POST
def conversation_delete(request: AppRequest, conversation_id: int) -> HttpResponse:
    access = page_access(request)
    conversation = selectors.conversation_get(access=access, conversation_id=conversation_id)
    services.conversation_delete(access=access, conversation_id=conversation.pk)
    messages.success(request, f"Conversation “{conversation}” deleted.")
    return redirect("conversation_list", workspace_slug=access.workspace.slug)


@require_POST
def turn_cache_wrong(request: AppRequest, conversation_id: int, turn_id: int) -> HttpResponse:
    """ "Wrong answer" on a turn served from the cache: the entry is evicted and counted."""
    access = page_access(request, Perm.RUN)
    try:
        turn = services.turn_cache_report(
            access=access, conversation_id=conversation_id, turn_id=turn_id
        )
    except Conflict as exc:
        return HttpResponse(exc.message, status=409)
    if request.htmx:
        return HttpResponse(live.render_turn(turn))
    messages.success(request, "Thanks: that answer will not be served from the cache again.")
    return redirect(
        "conversation_detail", workspace_slug=access.workspace.slug, conversation_id=conversation_id
    )
