"""Building export archives: a zip of JSON Lines files (one row per line, written as rows are
read, so a large workspace never sits in memory) plus a `manifest.json` saying what each file
holds. Secrets never leave: API keys appear as metadata only, and columns that hold a secret
(hashes, encrypted values, tokens) are left out of every file (docs/privacy.md, "Exports")."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils.text import get_valid_filename
from django_tenants.utils import schema_context

from tenants.models import Workspace
from tenants.schemas import live_workspaces

if TYPE_CHECKING:
    from accounts.models import User

# Columns that hold secrets or their digests: never exported, whatever the table.
SECRET_COLUMNS = frozenset(
    {"password", "key_hash", "token_hash", "token", "resume_token", "secret_encrypted"}
)
SECRET_SUFFIXES = ("_encrypted", "_hash", "_secret")

Progress = Callable[[int, str], None]


def _exportable(field: models.Field[Any, Any]) -> bool:
    name = field.attname
    if name in SECRET_COLUMNS or name.endswith(SECRET_SUFFIXES):
        return False
    if isinstance(field, models.BinaryField):
        return False  # file contents go into the archive as files of their own
    return field.get_internal_type() != "VectorField"


def row(obj: models.Model, *, only: Iterable[str] | None = None) -> dict[str, Any]:
    """A model instance as a JSON-ready dict of its exportable columns."""
    wanted = set(only) if only is not None else None
    return {
        field.attname: getattr(obj, field.attname)
        for field in obj._meta.concrete_fields
        if _exportable(field) and (wanted is None or field.attname in wanted)
    }


@dataclass(frozen=True)
class Section:
    """One file of the archive: the rows of `model` matching `rows`, in the active schema."""

    path: str
    model: str
    rows: Q
    only: tuple[str, ...] | None = None


class ArchiveWriter:
    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.manifest: dict[str, int] = {}

    def section(self, section: Section) -> int:
        model = apps.get_model(section.model)
        queryset = model._default_manager.filter(section.rows).order_by("pk")
        return self.rows(section.path, (row(o, only=section.only) for o in queryset.iterator()))

    def rows(self, path: str, rows: Iterable[dict[str, Any]]) -> int:
        count = 0
        with self.archive.open(path, "w") as out:
            for item in rows:
                out.write(json.dumps(item, cls=DjangoJSONEncoder).encode() + b"\n")
                count += 1
        self.manifest[path] = count
        return count

    def document(self, path: str, value: Any) -> None:
        self.archive.writestr(path, json.dumps(value, cls=DjangoJSONEncoder, indent=2))

    def file(self, path: str, content: bytes) -> None:
        self.archive.writestr(path, content)
        self.manifest[path] = len(content)

    def finish(self, about: dict[str, Any]) -> None:
        self.document("manifest.json", {**about, "files": self.manifest})


# --- everything about a person -----------------------------------------------------------------
def account_sections(user: User) -> list[Section]:
    uid = user.pk
    return [
        Section("account/email_addresses.jsonl", "account.EmailAddress", Q(user_id=uid)),
        Section("account/memberships.jsonl", "tenants.Membership", Q(user_id=uid)),
        Section("account/invitations_sent.jsonl", "tenants.Invitation", Q(invited_by_id=uid)),
        Section(
            "account/api_keys.jsonl",
            "tenants.ApiKey",
            Q(created_by_id=uid),
            only=(
                "id",
                "workspace_id",
                "name",
                "prefix",
                "scopes",
                "created_at",
                "last_used_at",
                "expires_at",
                "revoked_at",
            ),
        ),
        Section("account/audit_entries.jsonl", "tenants.AuditEvent", Q(actor_id=uid)),
        Section("account/notifications.jsonl", "notifications.Notification", Q(user_id=uid)),
        Section(
            "account/notification_preferences.jsonl", "notifications.Preference", Q(user_id=uid)
        ),
        Section(
            "account/sso_identities.jsonl",
            "socialaccount.SocialAccount",
            Q(user_id=uid),
            only=("id", "provider", "uid", "last_login", "date_joined", "extra_data"),
        ),
        Section(
            "account/two_factor.jsonl",
            "mfa.Authenticator",
            Q(user_id=uid),
            only=("id", "type", "created_at", "last_used_at"),  # never the secret or codes
        ),
        Section("marketplace/reviews.jsonl", "marketplace.Review", Q(author_id=uid)),
        Section("marketplace/flags.jsonl", "marketplace.Flag", Q(reporter_id=uid)),
        Section(
            "marketplace/listing_versions_published.jsonl",
            "marketplace.ListingVersion",
            Q(submitted_by_id=uid),
        ),
        Section("marketplace/installs.jsonl", "marketplace.Install", Q(installed_by_id=uid)),
        Section(
            "money/purchases.jsonl",
            "marketplace.Purchase",
            Q(bought_by_id=uid),
            only=(
                "id",
                "buyer_id",
                "listing_id",
                "version_id",
                "pricing",
                "unit_amount_cents",
                "currency",
                "status",
                "created_at",
                "activated_at",
                "ended_at",
            ),
        ),
        Section(
            "money/earnings_ledger.jsonl",
            "marketplace.LedgerEntry",
            Q(
                publisher__workspace__memberships__user_id=uid,
                publisher__workspace__memberships__role="owner",
            ),
            only=(
                "id",
                "publisher_id",
                "listing_id",
                "purchase_id",
                "kind",
                "bucket",
                "amount_cents",
                "gross_cents",
                "fee_cents",
                "currency",
                "occurred_at",
            ),
        ),
    ]


def account_workspace_sections(user_id: int) -> list[Section]:
    """What they did inside one workspace (run in its schema)."""
    return [
        Section("agent_runs.jsonl", "agents.AgentRun", Q(created_by_id=user_id)),
        Section("workflow_runs.jsonl", "workflows.WorkflowRun", Q(created_by_id=user_id)),
        Section("workflow_steps.jsonl", "workflows.StepRun", Q(run__created_by_id=user_id)),
        Section("approvals_decided.jsonl", "workflows.StepRun", Q(decided_by_id=user_id)),
        Section("conversations.jsonl", "agents.Conversation", Q(created_by_id=user_id)),
        Section(
            "messages.jsonl",
            "agents.ConversationTurn",
            Q(conversation__created_by_id=user_id),
        ),
        Section("agents_created.jsonl", "agents.Agent", Q(created_by_id=user_id)),
        Section("workflows_created.jsonl", "workflows.Workflow", Q(created_by_id=user_id)),
        Section(
            "knowledge_documents_added.jsonl",
            "agents.KnowledgeDocument",
            Q(created_by_id=user_id),
        ),
    ]


def account_workspaces(user: User) -> list[Workspace]:
    """Every workspace they belong to (their rows elsewhere left with their membership)."""
    return list(live_workspaces().filter(memberships__user=user).order_by("pk").distinct())


def write_account(archive: zipfile.ZipFile, user: User, progress: Progress) -> None:
    writer = ArchiveWriter(archive)
    workspaces = account_workspaces(user)
    sections = account_sections(user)
    total = len(sections) + len(workspaces) + 1
    progress(0, "Your account")
    writer.document(
        "account/profile.json",
        row(
            user,
            only=("id", "email", "full_name", "date_joined", "last_login", "is_active"),
        ),
    )
    for done, section in enumerate(sections, 1):
        progress(done * 100 // total, f"Collecting {section.path}")
        writer.section(section)
    for done, workspace in enumerate(workspaces, len(sections) + 1):
        progress(done * 100 // total, f"Workspace {workspace.name}")
        with schema_context(workspace.schema_name):
            for section in account_workspace_sections(user.pk):
                writer.section(
                    Section(
                        f"workspaces/{workspace.slug}/{section.path}",
                        section.model,
                        section.rows,
                        section.only,
                    )
                )
    writer.finish(
        {"kind": "account", "user_id": user.pk, "workspaces": [w.slug for w in workspaces]}
    )


# --- a whole workspace -------------------------------------------------------------------------
WORKSPACE_TABLES: list[tuple[str, str]] = [
    ("definitions/agents.jsonl", "agents.Agent"),
    ("definitions/agent_versions.jsonl", "agents.AgentVersion"),
    ("definitions/model_aliases.jsonl", "agents.ModelAlias"),
    ("definitions/alias_targets.jsonl", "agents.AliasTarget"),
    ("definitions/allowed_hosts.jsonl", "agents.AllowedHost"),
    ("definitions/budget.jsonl", "agents.WorkspaceBudget"),
    ("definitions/workflows.jsonl", "workflows.Workflow"),
    ("definitions/workflow_versions.jsonl", "workflows.WorkflowVersion"),
    ("definitions/triggers.jsonl", "workflows.Trigger"),
    ("runs/agent_runs.jsonl", "agents.AgentRun"),
    ("runs/workflow_runs.jsonl", "workflows.WorkflowRun"),
    ("runs/step_runs.jsonl", "workflows.StepRun"),
    ("conversations/conversations.jsonl", "agents.Conversation"),
    ("conversations/messages.jsonl", "agents.ConversationTurn"),
    ("knowledge/knowledge_bases.jsonl", "agents.KnowledgeBase"),
    ("knowledge/documents.jsonl", "agents.KnowledgeDocument"),
    ("usage/ledger.jsonl", "agents.UsageRecord"),
]


def write_workspace(archive: zipfile.ZipFile, workspace: Workspace, progress: Progress) -> None:
    writer = ArchiveWriter(archive)
    total = len(WORKSPACE_TABLES) + 3
    progress(0, "Members")
    writer.document("workspace.json", row(workspace, only=("id", "name", "slug", "created_at")))
    members = (
        apps.get_model("tenants.Membership")
        .objects.filter(workspace=workspace)
        .select_related("user")
        .order_by("user__email")
    )
    writer.rows(
        "members.jsonl",
        (
            {
                "email": m.user.email,
                "name": m.user.full_name,
                "role": m.role,
                "joined_at": m.created_at,
            }
            for m in members
        ),
    )
    writer.section(Section("audit.jsonl", "tenants.AuditEvent", Q(workspace_id=workspace.pk)))
    with schema_context(workspace.schema_name):
        for done, (path, model) in enumerate(WORKSPACE_TABLES, 2):
            progress(done * 100 // total, f"Collecting {path}")
            writer.section(Section(path, model, Q()))
        progress((total - 1) * 100 // total, "Knowledge files")
        documents = apps.get_model("agents.KnowledgeDocument").objects.order_by("pk")
        for document in documents.iterator():
            writer.file(
                # A stored name never reaches a path of its own (no "../" in the archive).
                f"knowledge/files/{document.knowledge_base_id}/"
                f"{document.pk}-{get_valid_filename(document.filename) or 'file'}",
                bytes(document.content),
            )
    writer.finish({"kind": "workspace", "workspace": workspace.slug})
