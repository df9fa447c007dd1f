"""Writes for shares: create, update (branding, allowed origins, logo), regenerate the key,
revoke; and for visitors, asking a question (a turn of their own conversation, answered by
the chat's worker like any other turn: ledger, budgets, cache rules)."""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.chat import services as chat
from agents.embed import selectors
from agents.gateway import budgets, config_cache
from agents.models import Agent, ChatShare, Conversation, ConversationTurn
from billing import quotas
from core.exceptions import ApplicationError, Conflict, NotFound, ValidationFailed
from tenants import audit
from tenants.permissions import Access, Perm

HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_ORIGINS = 20
MAX_LOGO_BYTES = 200 * 1024
LOGO_TYPES = {  # magic bytes → content type; SVG is refused (it can carry script)
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}


def new_key() -> str:
    return secrets.token_urlsafe(24)


def origins_clean(raw: list[str]) -> list[str]:
    """Each allowed origin as scheme://host[:port], https (or http on localhost/loopback)."""
    cleaned: list[str] = []
    for entry in raw:
        text = entry.strip().rstrip("/")
        if not text:
            continue
        parts = urlsplit(text)
        local = parts.hostname in {"localhost", "127.0.0.1", "[::1]", "::1"}
        if (
            parts.scheme not in {"https", "http"}
            or (parts.scheme == "http" and not local)
            or not parts.netloc
            or parts.path
            or parts.query
            or parts.fragment
            or "*" in text
            or "@" in parts.netloc
        ):
            raise ValidationFailed(
                f"“{text}” is not an origin.",
                fields={
                    "allowed_origins": [
                        f"“{text}”: write scheme and host only, like https://www.example.com "
                        "(http only for localhost)."
                    ]
                },
            )
        origin = f"{parts.scheme}://{parts.netloc.lower()}"
        if origin not in cleaned:
            cleaned.append(origin)
    if len(cleaned) > MAX_ORIGINS:
        raise ValidationFailed(
            "Too many origins.", fields={"allowed_origins": [f"At most {MAX_ORIGINS} origins."]}
        )
    return cleaned


def logo_type_of(data: bytes) -> str:
    if len(data) > MAX_LOGO_BYTES:
        raise ValidationFailed(
            "The logo is too large.",
            fields={
                "logo": [f"At most {MAX_LOGO_BYTES // 1024} KB (it has {len(data) // 1024} KB)."]
            },
        )
    for magic, kind in LOGO_TYPES.items():
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ValidationFailed(
        "The logo is not an image we accept.", fields={"logo": ["Upload a PNG, JPEG, GIF or WebP."]}
    )


def _branding(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "title" in fields:
        title = str(fields["title"]).strip()
        if not title:
            raise ValidationFailed("Name the chat.", fields={"title": ["Required."]})
        out["title"] = title[:80]
    if "greeting" in fields:
        out["greeting"] = str(fields["greeting"]).strip()[:300]
    if "accent_colour" in fields:
        colour = str(fields["accent_colour"]).strip()
        if not HEX_COLOUR.match(colour):
            raise ValidationFailed(
                "The colour is not valid.",
                fields={"accent_colour": ["Write a colour like #4f46e5."]},
            )
        out["accent_colour"] = colour.lower()
    if "show_powered_by" in fields:
        out["show_powered_by"] = bool(fields["show_powered_by"])
    if "allowed_origins" in fields:
        out["allowed_origins"] = origins_clean(list(fields["allowed_origins"]))
    return out


@transaction.atomic
def share_create(*, access: Access, agent_id: int, title: str = "") -> ChatShare:
    access.require(Perm.WORKSPACE_UPDATE)
    agent = Agent.objects.filter(pk=agent_id, archived_at__isnull=True).first()
    if agent is None or agent.current_version_id is None:
        raise NotFound("No active agent with that id.", fields={"agent": ["Not found."]})
    share = ChatShare.objects.create(
        agent=agent,
        key=new_key(),
        title=(title.strip() or agent.name)[:80],
        created_by_id=access.actor_id,
    )
    audit.record_for(access, action=audit.Action.SHARE_CREATED, target=share)
    return share


@transaction.atomic
def share_update(
    *,
    access: Access,
    share_id: int,
    logo: bytes | None = None,
    remove_logo: bool = False,
    **fields: Any,
) -> ChatShare:
    access.require(Perm.WORKSPACE_UPDATE)
    share = _live(share_id)
    for name, value in _branding(fields).items():
        setattr(share, name, value)
    if remove_logo:
        share.logo, share.logo_type = None, ""
    elif logo is not None:
        share.logo_type = logo_type_of(logo)
        share.logo = logo
    share.save()
    audit.record_for(access, action=audit.Action.SHARE_UPDATED, target=share)
    return share


def _live(share_id: int) -> ChatShare:
    share = ChatShare.objects.select_for_update().filter(pk=share_id).first()
    if share is None:
        raise NotFound("No share with that id in this workspace.")
    if share.revoked_at is not None:
        raise Conflict("This share was revoked.")
    return share


@transaction.atomic
def share_regenerate(*, access: Access, share_id: int) -> ChatShare:
    """A new key: the old link, widget snippet and every visitor token stop working."""
    access.require(Perm.WORKSPACE_UPDATE)
    share = _live(share_id)
    share.key = new_key()
    share.save(update_fields=["key", "updated_at"])
    audit.record_for(access, action=audit.Action.SHARE_REGENERATED, target=share)
    return share


@transaction.atomic
def share_revoke(*, access: Access, share_id: int) -> ChatShare:
    access.require(Perm.WORKSPACE_UPDATE)
    share = _live(share_id)
    share.revoked_at = timezone.now()
    share.save(update_fields=["revoked_at", "updated_at"])
    audit.record_for(access, action=audit.Action.SHARE_REVOKED, target=share)
    return share


@transaction.atomic
def share_conversation_delete(*, access: Access, share_id: int, conversation_id: int) -> None:
    """Owners and admins delete one visitor's conversation (audited: whose, how many turns).
    The visitor starts afresh with their next question."""
    access.require(Perm.WORKSPACE_UPDATE)
    share = selectors.share_for_members(access=access, share_id=share_id)
    conversation = selectors.share_conversation_get(
        access=access, share=share, conversation_id=conversation_id
    )
    audit.record_for(
        access,
        action=audit.Action.SHARE_CONVERSATION_DELETED,
        target=share,
        metadata={
            "conversation_id": conversation.pk,
            "end_user_id": conversation.end_user_id,
            "turns": conversation.turns.count(),
        },
    )
    conversation.delete()


# What a visitor reads when the workspace's plan or budget refuses their question: the owner's
# reason (plan names, figures, the Billing page) is for the workspace, not for the public.
VISITOR_LIMIT_REACHED = selectors.VISITOR_LIMIT_REACHED
VISITOR_UNAVAILABLE = selectors.VISITOR_UNAVAILABLE


class SharedChatUnavailable(ApplicationError):
    """The marketplace refused the shared agent (a copy of a paid listing): 402 like its own
    refusal, with a visitor's message; the owners read the reason on the share's page."""

    code = "chat_unavailable"
    status = 402


def _workspace_room_require() -> None:
    """Refuse a visitor's question before anything is queued or charged when the workspace
    could not pay for it: the plan's runs this period are used up (each question counts one
    run, like an API run; `quotas.run_reserve`, inside the caller's transaction, so a refused
    or failed ask gives it back), the workspace is read-only, the plan's included AI spend is
    used up (plans without overage), or the workspace's monthly budget is. Same status and code
    as the API's refusals (402 `quota_exceeded` / `budget_exceeded`), a visitor's message."""
    try:
        quotas.run_reserve(workspace_id=None)
    except quotas.QuotaExceeded:
        raise quotas.QuotaExceeded(VISITOR_LIMIT_REACHED) from None
    allowance = quotas.ai_spend_allowance(config_cache.billing_view())
    if allowance is not None and allowance.paused:
        raise quotas.QuotaExceeded(VISITOR_LIMIT_REACHED)
    if budgets.spend_used_up() is not None:
        raise budgets.BudgetExceeded(VISITOR_LIMIT_REACHED)


def visitor_ask(*, share: ChatShare, end_user_id: str, question: str) -> ConversationTurn:
    """The visitor's next question in their own conversation (created on the first), queued
    for the chat worker like a member's turn, once the marketplace allows the shared agent (a
    paid listing's copy: `chat.listing_check`) and the workspace's plan and budget have room
    for it (`_workspace_room_require`). A refusal queues, creates and counts nothing."""
    text = chat.question_clean(question)
    with transaction.atomic():
        version = chat.chattable(share.agent, field="question")
        try:
            chat.listing_check(share.agent, surface="shared_chat")
        except ApplicationError:
            raise SharedChatUnavailable(VISITOR_UNAVAILABLE) from None
        conversation = (
            Conversation.objects.select_for_update()
            .filter(share=share, end_user_id=end_user_id)
            .first()
        )
        if conversation is None:
            try:
                with transaction.atomic():
                    conversation = Conversation.objects.create(
                        agent=share.agent,
                        share=share,
                        end_user_id=end_user_id,
                        title=chat.title_from(text),
                    )
            except IntegrityError:  # the same visitor's other tab was first
                conversation = Conversation.objects.select_for_update().get(
                    share=share, end_user_id=end_user_id
                )
        chat.turns_expire_stale(conversation_id=conversation.pk)
        if conversation.turns.filter(status=ConversationTurn.Status.STREAMING).exists():
            raise Conflict(
                "The previous answer is still coming.",
                fields={"question": ["Wait for the current answer to finish, then send this."]},
            )
        _workspace_room_require()
        conversation.save(update_fields=["updated_at"])
        return chat.turn_queue(conversation, version, text)
