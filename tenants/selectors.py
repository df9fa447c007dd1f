"""Reads for workspaces. `access_for_user` is the gate every workspace page passes through."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone
from django_tenants.utils import get_public_schema_name

from core.exceptions import NotFound
from tenants.audit import ACCOUNT_ACTIONS, Action
from tenants.models import ApiKey, AuditEvent, Invitation, Membership, Role, Workspace
from tenants.permissions import ROLE_PERMISSIONS, Access, Perm
from tenants.schemas import schema_qualified

if TYPE_CHECKING:
    from accounts.models import User


SWITCHER_SIZE = 8  # workspaces the top bar's switcher lists; the rest are on "All workspaces"


class WorkspacePendingDeletion(NotFound):
    """The workspace exists and the caller is a member, but it is scheduled for deletion:
    nothing in it can be reached until an owner or staff restores it (docs/privacy.md). A
    NotFound, so every caller that shuts out non-members (websockets, the API) shuts this out
    too; pages show a clear page instead (tenants/middleware.py)."""

    code = "workspace_pending_deletion"
    status = 410

    def __init__(self, *, workspace: Workspace, role: str) -> None:
        super().__init__(f"The workspace '{workspace.name}' is scheduled for deletion.")
        self.workspace = workspace
        self.role = role


def workspaces_for_user(*, user: User, query: str = "") -> QuerySet[Membership]:
    """The user's memberships by workspace name, optionally those whose name or address
    contains `query`. Callers page it: a user may belong to thousands of workspaces."""
    memberships = Membership.objects.filter(
        user=user, workspace__is_template=False, workspace__purged_at__isnull=True
    )
    if query:
        memberships = memberships.filter(
            Q(workspace__name__icontains=query) | Q(workspace__slug__icontains=query)
        )
    return memberships.select_related("workspace").order_by("workspace__name", "workspace_id")


@dataclass(frozen=True)
class Switcher:
    memberships: list[Membership]  # at most SWITCHER_SIZE
    total: int

    @property
    def more(self) -> int:
        return self.total - len(self.memberships)


def switcher_for_user(*, user: User) -> Switcher:
    """The top bar's workspace switcher: two queries whatever the number of workspaces."""
    memberships = workspaces_for_user(user=user)
    first = list(memberships[: SWITCHER_SIZE + 1])
    total = len(first) if len(first) <= SWITCHER_SIZE else memberships.count()
    return Switcher(memberships=first[:SWITCHER_SIZE], total=total)


def home_workspace_slug(*, user: User, last: str | None) -> str | None:
    """Where signing in lands: the last workspace used if still a member, else the first (not
    one scheduled for deletion: that one only shows its closed page)."""
    memberships = workspaces_for_user(user=user).filter(
        workspace__deletion_requested_at__isnull=True
    )
    if last and memberships.filter(workspace__slug=last).exists():
        return last
    first = memberships.first()
    return first.workspace.slug if first else None


def access_for_user(*, user: User, slug: str) -> Access:
    """The caller's access to workspace `slug`. A workspace the user is not a member of is
    indistinguishable from one that does not exist (NotFound, never PermissionDenied)."""
    if not getattr(user, "is_authenticated", False):
        raise NotFound("Workspace not found.")
    membership = (
        # The workspace's sign-in rules come along (one join): every page checks them.
        Membership.objects.select_related("workspace", "workspace__sign_in")
        .filter(user=user, workspace__slug=slug, workspace__is_template=False)
        .first()
    )
    if membership is None or membership.workspace.purged_at is not None:
        raise NotFound("Workspace not found.")
    if membership.workspace.deletion_requested_at is not None:
        raise WorkspacePendingDeletion(workspace=membership.workspace, role=membership.role)
    return access_for_membership(membership=membership, user=user)


def access_for_membership(*, membership: Membership, user: User) -> Access:
    """`user`'s access through `membership` (theirs): their role in its workspace. For callers
    that already hold the membership (a page listing the user's workspaces, a command)."""
    return Access(workspace=membership.workspace, user=user, role=membership.role)


@dataclass(frozen=True)
class _KeyQuery:
    sql: str
    key_fields: list[str]  # attnames, in the SELECT's order
    workspace_fields: list[str]
    converters: list[tuple[int, Any, Any]]  # (column, converter, expression), in order


@functools.cache
def _key_query() -> _KeyQuery:
    """The key-with-its-workspace lookup, written once: the same SELECT the ORM makes for
    `ApiKey.objects.select_related("workspace").filter(key_hash=…)`, but with both tables
    named in the public schema (so it needs no `SET search_path`) and compiled once per
    process instead of on every API call (≈0.4 ms of a 5 ms list; docs/decisions.md 128)."""
    connection = connections[DEFAULT_DB_ALIAS]
    quote = connection.ops.quote_name
    public = quote(get_public_schema_name())
    columns: list[str] = []
    converters: list[tuple[int, Any, Any]] = []
    for alias, model in (("k", ApiKey), ("w", Workspace)):
        for field in model._meta.concrete_fields:
            expression = field.get_col(alias)
            converters += [
                (len(columns), converter, expression)
                for converter in (
                    *connection.ops.get_db_converters(expression),
                    *expression.get_db_converters(connection),
                )
            ]
            columns.append(f"{alias}.{quote(str(field.column))}")
    # Only names from the models' metadata go into the text; the hash is a parameter.
    key_table, workspace_table = ApiKey._meta.db_table, Workspace._meta.db_table
    workspace_pk = quote(str(Workspace._meta.get_field("id").column))
    workspace_id = quote(str(ApiKey._meta.get_field("workspace").column))
    key_hash = quote(str(ApiKey._meta.get_field("key_hash").column))
    sql = (
        f"SELECT {', '.join(columns)} FROM {public}.{quote(key_table)} k "  # noqa: S608
        f"INNER JOIN {public}.{quote(workspace_table)} w "
        f"ON w.{workspace_pk} = k.{workspace_id} "
        f"WHERE k.{key_hash} = %s"
    )
    return _KeyQuery(
        sql=sql,
        key_fields=[f.attname for f in ApiKey._meta.concrete_fields],
        workspace_fields=[f.attname for f in Workspace._meta.concrete_fields],
        converters=converters,
    )


def api_key_by_hash(*, key_hash: str) -> ApiKey | None:
    """The API key with this hash and its workspace (whatever their state), or None. Runs
    without touching the connection's search path (`schema_qualified`)."""
    query = _key_query()
    connection = connections[DEFAULT_DB_ALIAS]
    with schema_qualified(), connection.cursor() as cursor:
        cursor.execute(query.sql, [key_hash])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, converter, expression in query.converters:
        values[index] = converter(values[index], expression, connection)
    split = len(query.key_fields)
    key = ApiKey.from_db(DEFAULT_DB_ALIAS, query.key_fields, values[:split])
    key.workspace = Workspace.from_db(DEFAULT_DB_ALIAS, query.workspace_fields, values[split:])
    return key


def access_for_api_key(*, api_key: ApiKey) -> Access:
    return Access(workspace=api_key.workspace, api_key=api_key)


def members_list(*, access: Access) -> QuerySet[Membership]:
    access.require(Perm.MEMBERS_VIEW)
    return (
        Membership.objects.filter(workspace=access.workspace)
        .select_related("user")
        .order_by("user__email")
    )


def member_get(*, access: Access, membership_id: int) -> Membership:
    access.require(Perm.MEMBERS_VIEW)
    membership = members_list(access=access).filter(pk=membership_id).first()
    if membership is None:
        raise NotFound("No member with that id in this workspace.")
    return membership


def _pending_invitations(workspace: Workspace) -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        workspace=workspace,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    )


def invitations_pending(*, access: Access) -> QuerySet[Invitation]:
    access.require(Perm.MEMBERS_VIEW)
    return (
        _pending_invitations(access.workspace).select_related("invited_by").order_by("-created_at")
    )


def api_keys_list(*, access: Access) -> QuerySet[ApiKey]:
    access.require(Perm.API_KEYS_MANAGE)
    return (
        ApiKey.objects.filter(workspace=access.workspace)
        .select_related("created_by")
        .order_by(F("revoked_at").asc(nulls_first=True), "-created_at")
    )


def audit_events(*, access: Access, action: str = "") -> QuerySet[AuditEvent]:
    """The workspace's events, plus the account events (sign-in, sign-out, failed sign-in) of
    its current members: those happen outside any workspace, so they carry none."""
    access.require(Perm.AUDIT_VIEW)
    members = Membership.objects.filter(workspace=access.workspace)
    events = AuditEvent.objects.filter(
        Q(workspace=access.workspace)
        | Q(
            workspace__isnull=True,
            action__in=ACCOUNT_ACTIONS,
            actor_id__in=members.values("user_id"),
        )
        | Q(
            workspace__isnull=True,
            action=Action.SIGN_IN_FAILED,
            actor__isnull=True,
            target_label__in=members.values("user__email"),
        )
    ).select_related("actor")
    if action:
        events = events.filter(action=action)
    return events


def workspace_summary(*, access: Access) -> dict[str, int]:
    counts = Membership.objects.filter(workspace=access.workspace).aggregate(members=Count("id"))
    counts["pending_invitations"] = _pending_invitations(access.workspace).count()
    counts["active_api_keys"] = ApiKey.objects.filter(
        workspace=access.workspace, revoked_at__isnull=True
    ).count()
    return counts


def workspace_for_schema(*, schema_name: str) -> Workspace | None:
    return Workspace.objects.filter(schema_name=schema_name).first()


def admin_emails(*, workspace_id: int) -> list[str]:
    """Who is mailed about the workspace's budget and plan: its owners and admins."""
    return list(
        Membership.objects.filter(
            workspace_id=workspace_id, role__in=[Role.OWNER, Role.ADMIN]
        ).values_list("user__email", flat=True)
    )


def admin_ids(*, workspace_id: int) -> list[int]:
    """Who is notified about the workspace's budget and plan: its owners and admins."""
    return list(
        Membership.objects.filter(
            workspace_id=workspace_id, role__in=[Role.OWNER, Role.ADMIN]
        ).values_list("user_id", flat=True)
    )


def member_ids_with(*, workspace_id: int, perm: Perm) -> list[int]:
    """The members whose role grants `perm` (who may decide an approval, for example)."""
    roles = [role for role, granted in ROLE_PERMISSIONS.items() if perm in granted]
    return list(
        Membership.objects.filter(workspace_id=workspace_id, role__in=roles).values_list(
            "user_id", flat=True
        )
    )
