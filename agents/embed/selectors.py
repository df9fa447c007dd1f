"""Reads for shares: the owner's list and one share (through `Access`), and for visitors the
live share behind a public URL (switching to its workspace's schema) and their conversation."""

from __future__ import annotations

from django.db.models import QuerySet

from agents.models import ChatShare, Conversation, ConversationTurn
from core.exceptions import NotFound
from tenants.models import Workspace
from tenants.permissions import Access, Perm
from tenants.schemas import activate

GONE = "This chat link does not exist or is no longer shared."


def shares_list(*, access: Access) -> QuerySet[ChatShare]:
    access.require(Perm.WORKSPACE_UPDATE)
    return ChatShare.objects.select_related("agent").filter(revoked_at__isnull=True)


def share_get(*, access: Access, share_id: int) -> ChatShare:
    access.require(Perm.WORKSPACE_UPDATE)
    share = ChatShare.objects.select_related("agent").filter(pk=share_id).first()
    if share is None:
        raise NotFound("No share with that id in this workspace.")
    return share


def share_for_token_minting(*, access: Access, share_id: int) -> ChatShare:
    """A live share for the workspace's backend minting end-user tokens (scope `run`)."""
    access.require(Perm.RUN)
    share = ChatShare.objects.filter(pk=share_id, revoked_at__isnull=True).first()
    if share is None:
        raise NotFound("No live share with that id in this workspace.")
    return share


def share_public(*, space: str, key: str) -> tuple[Workspace, ChatShare]:
    """The live share at /s/<space>/<key>/, with the connection switched to its workspace's
    schema (the caller switches back). A wrong key, a revoked share, an archived agent and a
    workspace being deleted all answer the same 404."""
    workspace = Workspace.objects.filter(
        slug=space,
        is_template=False,
        purged_at__isnull=True,
        deletion_requested_at__isnull=True,
    ).first()
    if workspace is None or len(key) < 20:
        raise NotFound(GONE)
    activate(workspace)
    share = (
        ChatShare.objects.select_related("agent", "agent__current_version")
        .filter(key=key, revoked_at__isnull=True, agent__archived_at__isnull=True)
        .first()
    )
    if share is None or share.agent.current_version is None:
        raise NotFound(GONE)
    return workspace, share


def visitor_conversation(*, share: ChatShare, end_user_id: str) -> Conversation | None:
    return Conversation.objects.filter(share=share, end_user_id=end_user_id).first()


def visitor_turns(*, conversation: Conversation | None) -> list[ConversationTurn]:
    if conversation is None:
        return []
    return list(conversation.turns.order_by("created_at", "id"))
