"""The audit trail: one function writes it, with the caller's address, user agent and request
id from the request context (`core.request_context`) when there is a request."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.db import models

from core.request_context import client_var, request_id_var
from tenants.models import AuditEvent

if TYPE_CHECKING:
    from tenants.models import ApiKey, Workspace
    from tenants.permissions import Access

logger = logging.getLogger("audit")


class Action(models.TextChoices):
    SIGN_IN = "auth.sign_in", "Signed in"
    SIGN_OUT = "auth.sign_out", "Signed out"
    SIGN_IN_FAILED = "auth.sign_in_failed", "Failed sign-in"
    WORKSPACE_CREATED = "workspace.created", "Workspace created"
    WORKSPACE_UPDATED = "workspace.updated", "Workspace updated"
    MEMBER_INVITED = "member.invited", "Member invited"
    INVITATION_REVOKED = "member.invitation_revoked", "Invitation revoked"
    MEMBER_JOINED = "member.joined", "Member joined"
    MEMBER_ROLE_CHANGED = "member.role_changed", "Role changed"
    MEMBER_REMOVED = "member.removed", "Member removed"
    API_KEY_CREATED = "api_key.created", "API key created"
    API_KEY_REVOKED = "api_key.revoked", "API key revoked"
    SIGN_IN_IDP_UPDATED = "sign_in.idp_updated", "Identity provider updated"
    SIGN_IN_IDP_REMOVED = "sign_in.idp_removed", "Identity provider removed"
    SIGN_IN_POLICY_UPDATED = "sign_in.policy_updated", "Sign-in requirements changed"
    DOMAIN_CLAIMED = "sign_in.domain_claimed", "Email domain claimed"
    DOMAIN_VERIFIED = "sign_in.domain_verified", "Email domain verified"
    DOMAIN_REMOVED = "sign_in.domain_removed", "Email domain removed"
    MEMBER_JOINED_BY_SSO = "member.joined_by_sso", "Member joined through SSO"
    WEBHOOK_SECRET_ROTATED = "webhook.secret_rotated", "Webhook secret rotated"
    HOST_ADDED = "outbound.host_added", "Outbound host allowed"
    HOST_REMOVED = "outbound.host_removed", "Outbound host removed"
    WORKFLOW_CREATED = "workflow.created", "Workflow created"
    WORKFLOW_UPDATED = "workflow.updated", "Workflow updated"
    WORKFLOW_ARCHIVED = "workflow.archived", "Workflow archived"
    WORKFLOW_RESTORED = "workflow.restored", "Workflow restored"
    WORKFLOW_VERSION_SAVED = "workflow.version_saved", "Workflow version saved"
    WORKFLOW_VERSION_PUBLISHED = "workflow.version_published", "Workflow version published"
    WORKFLOW_VERSION_ROLLED_BACK = "workflow.version_rolled_back", "Workflow rolled back"
    TRIGGER_CREATED = "workflow.trigger_created", "Trigger created"
    TRIGGER_UPDATED = "workflow.trigger_updated", "Trigger updated"
    TRIGGER_DELETED = "workflow.trigger_deleted", "Trigger deleted"
    TRIGGER_SECRET_ROTATED = "workflow.trigger_secret_rotated", "Trigger secret rotated"
    LISTING_SUBMITTED = "marketplace.version_submitted", "Listing version submitted"
    LISTING_INSTALLED = "marketplace.installed", "Listing installed"
    LISTING_UPGRADED = "marketplace.upgraded", "Listing upgraded"
    LISTING_AUTO_UPGRADE_SET = "marketplace.auto_upgrade_set", "Automatic upgrades changed"
    LISTING_AUTO_UPGRADE_HELD = "marketplace.auto_upgrade_held", "Automatic upgrade held back"
    LISTING_UNINSTALLED = "marketplace.uninstalled", "Listing uninstalled"
    PAYOUTS_SETUP_STARTED = "marketplace.payouts_setup_started", "Payouts setup started"
    FEE_RULE_CHANGED = "marketplace.fee_rule_changed", "Platform fee changed (staff)"
    AGENT_CREATED = "agent.created", "Agent created"
    AGENT_UPDATED = "agent.updated", "Agent updated"
    AGENT_VERSION_RESTORED = "agent.version_restored", "Agent version restored"
    AGENT_ARCHIVED = "agent.archived", "Agent archived"
    SHARE_CREATED = "share.created", "Chat share created"
    SHARE_UPDATED = "share.updated", "Chat share updated"
    SHARE_REGENERATED = "share.regenerated", "Chat share link regenerated"
    SHARE_REVOKED = "share.revoked", "Chat share revoked"
    SHARE_CONVERSATION_DELETED = "share.conversation_deleted", "Visitor conversation deleted"
    PROVIDER_KEY_ADDED = "provider_key.added", "Provider key added"
    PROVIDER_KEY_REMOVED = "provider_key.removed", "Provider key removed"
    PROVIDER_KEY_CHECKED = "provider_key.checked", "Provider key checked"
    MODEL_ALIAS_CREATED = "model_alias.created", "Model alias created"
    MODEL_ALIAS_UPDATED = "model_alias.updated", "Model alias updated"
    MODEL_ALIAS_DELETED = "model_alias.deleted", "Model alias deleted"
    KNOWLEDGE_BASE_CREATED = "knowledge_base.created", "Knowledge base created"
    KNOWLEDGE_BASE_DELETED = "knowledge_base.deleted", "Knowledge base deleted"
    DOCUMENT_ADDED = "knowledge_base.document_added", "Document added"
    DOCUMENT_DELETED = "knowledge_base.document_deleted", "Document deleted"
    CREDIT_GRANTED = "billing.credit_granted", "Credit granted (staff)"
    TRIAL_EXTENDED = "billing.trial_extended", "Trial extended (staff)"
    PLAN_COMPED = "billing.plan_comped", "Plan comped (staff)"
    COMP_ENDED = "billing.comp_ended", "Comped plan ended"
    SALE_RECORDED = "money.sale_recorded", "Sale recorded (earnings pending)"
    EARNINGS_AVAILABLE = "money.earnings_available", "Earnings available (hold ended)"
    PAYOUT_CREATED = "money.payout_created", "Payout booked"
    PAYOUT_SENT = "money.payout_sent", "Payout transferred"
    PAYOUT_FAILED = "money.payout_failed", "Payout transfer failed"
    PAYOUT_CANCELED = "money.payout_canceled", "Payout canceled (staff)"
    REFUNDED = "money.refunded", "Purchase refunded (staff)"
    DISPUTE_OPENED = "money.dispute_opened", "Dispute opened (earnings frozen)"
    DISPUTE_WON = "money.dispute_won", "Dispute won (earnings released)"
    DISPUTE_LOST = "money.dispute_lost", "Dispute lost (earnings reversed)"
    TRANSFER_REVERSED = "money.transfer_reversed", "Payout transfer reversed in Stripe"
    BANK_PAYOUT_FAILED = "money.bank_payout_failed", "Bank payout failed (Stripe)"
    REFUND_FAILED = "money.refund_failed", "Refund refused by Stripe"
    REFUND_CANCELED = "money.refund_canceled", "Refund canceled (staff)"
    PURCHASE_PAID = "money.purchase_paid", "Purchase paid (buyer)"
    PURCHASE_CANCELED = "money.purchase_canceled", "Purchase canceled (buyer)"
    PURCHASE_REFUNDED = "money.purchase_refunded", "Purchase refunded (buyer)"
    # Data rights (privacy/, docs/privacy.md)
    ACCOUNT_EXPORT_REQUESTED = "privacy.account_export_requested", "Account export requested"
    ACCOUNT_EXPORT_DOWNLOADED = "privacy.account_export_downloaded", "Account export downloaded"
    ACCOUNT_DELETED = "privacy.account_deleted", "Account deleted"
    WORKSPACE_EXPORT_REQUESTED = "privacy.workspace_export_requested", "Workspace export requested"
    WORKSPACE_EXPORT_DOWNLOADED = (
        "privacy.workspace_export_downloaded",
        "Workspace export downloaded",
    )
    WORKSPACE_DELETION_REQUESTED = "privacy.workspace_deletion_requested", "Workspace deleted"
    WORKSPACE_RESTORED = "privacy.workspace_restored", "Workspace restored"
    WORKSPACE_PURGED = "privacy.workspace_purged", "Workspace purged (schema and files)"


# Account events belong to no workspace; each workspace's log shows those of its members.
ACCOUNT_ACTIONS = (Action.SIGN_IN, Action.SIGN_OUT, Action.SIGN_IN_FAILED)


def record(
    *,
    action: str,
    actor: Any = None,
    workspace: Workspace | None = None,
    api_key: ApiKey | None = None,
    target: models.Model | None = None,
    target_label: str = "",
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    user = actor if getattr(actor, "is_authenticated", False) else None
    actor_label = user.email if user is not None else ""
    if api_key is not None:
        actor_label = f"API key {api_key.prefix}"
    client = client_var.get()  # None outside a request (a task, a command): no address then
    event = AuditEvent.objects.create(
        action=action,
        actor=user,
        actor_label=actor_label,
        api_key=api_key,
        workspace=workspace,
        target_type=target._meta.label if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=target_label or (str(target) if target is not None else ""),
        ip_address=client.ip if client is not None else None,
        user_agent=client.user_agent if client is not None else "",
        request_id=request_id_var.get() if request_id_var.get() != "-" else "",
        metadata=metadata or {},
    )
    logger.info(
        "audit %s",
        action,
        extra={
            "audit_action": action,
            "actor": actor_label,
            "workspace": workspace.slug if workspace else None,
        },
    )
    return event


def record_for(
    access: Access,
    *,
    action: str,
    target: models.Model | None = None,
    target_label: str = "",
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    """`record` for an action taken through `access` (a member or an API key) in its workspace."""
    return record(
        action=action,
        actor=access.user,
        api_key=access.api_key,
        workspace=access.workspace,
        target=target,
        target_label=target_label,
        metadata=metadata,
    )
