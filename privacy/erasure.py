"""What erasing a person touches, table by table: one list per schema kind, read in order.

Invariant: after `erase_public` and `erase_workspace` (in every workspace schema) no row of any
table holds the person's email, name, address, user agent or text they wrote; rows that must
stay (financial records, the audit trail, the workspace's own definitions) keep only a link to
the anonymised account, which reads "Deleted user #N" (docs/privacy.md, "What is erased").

Adding a table is one `Step` line here;
tests/privacy/test_erasure.py searches every table of every schema for the person's data, so a
forgotten table fails it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.contrib.sessions.models import Session
from django.db.models import Q, TextField
from django.db.models.functions import Cast

if TYPE_CHECKING:
    from accounts.models import User


@dataclass(frozen=True)
class Subject:
    """The person being erased, as they were before anonymisation."""

    user_id: int
    email: str
    label: str  # what replaces them: "Deleted user #N"


@dataclass(frozen=True)
class Step:
    """Rows of `model` matching `rows(subject)` are deleted, or updated with `scrub` (values,
    or callables of the subject). `why` is what docs/privacy.md says about the table."""

    model: str
    rows: Callable[[Subject], Q]
    scrub: Mapping[str, Any] = field(default_factory=dict)
    why: str = ""

    @property
    def deletes(self) -> bool:
        return not self.scrub

    def apply(self, subject: Subject) -> int:
        model = apps.get_model(self.model)
        queryset = model._default_manager.filter(self.rows(subject))
        if self.deletes:
            deleted, _ = queryset.delete()
            return int(deleted)
        values = {k: (v(subject) if callable(v) else v) for k, v in self.scrub.items()}
        return int(queryset.update(**values))


def _by(field_name: str) -> Callable[[Subject], Q]:
    return lambda s: Q(**{field_name: s.user_id})


def _label(s: Subject) -> str:
    return s.label


# --- the public schema -----------------------------------------------------------------------
PUBLIC_STEPS: list[Step] = [
    Step("account.EmailAddress", _by("user_id"), why="Sign-in addresses: deleted."),
    Step(
        "socialaccount.SocialAccount",
        _by("user_id"),
        why="Identities at workspace IdPs (OpenID Connect and SAML; the uid may be the email, "
        "extra_data the IdP's claims or attributes): deleted.",
    ),
    Step(
        "mfa.Authenticator", _by("user_id"), why="Two-factor secrets and recovery codes: deleted."
    ),
    Step("tenants.Membership", _by("user_id"), why="Memberships: deleted."),
    Step(
        "tenants.Invitation",
        lambda s: Q(email__iexact=s.email),
        why="Invitations sent to the address: deleted.",
    ),
    Step(
        "tenants.AuditEvent",
        _by("actor_id"),
        scrub={"actor_label": _label, "ip_address": None, "user_agent": ""},
        why="Audit entries they made: kept, actor anonymised, address and browser erased.",
    ),
    Step(
        "tenants.AuditEvent",
        lambda s: Q(target_label__iexact=s.email, actor__isnull=True),
        scrub={"target_label": _label, "ip_address": None, "user_agent": ""},
        why="Failed sign-ins to their account: anonymised, with the address they came from.",
    ),
    Step(
        "tenants.AuditEvent",
        lambda s: (
            Q(target_label__iexact=s.email)
            | Q(target_type="accounts.User", target_id=str(s.user_id))
        ),
        scrub={"target_label": _label},
        why="Audit entries about them (invited, joined, removed): target anonymised.",
    ),
    Step(
        "marketplace.Review",
        _by("author_id"),
        scrub={"text": ""},
        why="Reviews they wrote: the rating stays (listing figures), their text is erased.",
    ),
    Step(
        "marketplace.Flag",
        _by("reporter_id"),
        scrub={"details": ""},
        why="Listing reports they filed: kept for moderation, their text erased.",
    ),
    Step(
        "admin.LogEntry",
        lambda s: Q(object_repr__iexact=s.email),
        scrub={"object_repr": _label, "change_message": ""},
        why="Back-office history naming them: anonymised.",
    ),
    Step("privacy.ExportJob", _by("requested_by_id"), why="Their export archives: deleted."),
    Step(
        "notifications.Notification",
        _by("user_id"),
        why="Their inbox and notification emails: deleted.",
    ),
    Step(
        "notifications.Preference",
        _by("user_id"),
        why="Their notification preferences: deleted.",
    ),
    Step(
        "tenants.EmailDomain",
        _by("created_by_id"),
        scrub={"created_by": None},
        why="Email domains they claimed for a workspace: kept (the workspace's), unlinked.",
    ),
]


# --- each workspace schema (tenant apps store public user ids as plain integers) -------------
def _their_turns(s: Subject) -> Any:
    return apps.get_model("agents.ConversationTurn").objects.filter(
        conversation__created_by_id=s.user_id
    )


def _their_agent_runs(s: Subject) -> Any:
    return apps.get_model("agents.AgentRun").objects.filter(created_by_id=s.user_id)


_DEFINITIONS = (
    "agents.Agent",
    "agents.AgentVersion",
    "agents.AllowedHost",
    "agents.KnowledgeBase",
    "agents.KnowledgeDocument",
    "workflows.Workflow",
    "workflows.WorkflowVersion",
    "workflows.Trigger",
)

WORKSPACE_STEPS: list[Step] = [
    # Order matters: rows found through a run or a turn go before the run loses its author.
    Step(
        "agents.CacheReport",
        lambda s: (
            Q(reported_by_id=s.user_id)
            | Q(turn_id__in=_their_turns(s).values("id"))
            | Q(run_id__in=_their_agent_runs(s).values("id"))
        ),
        why="Wrong-answer reports they filed or that quote them: deleted.",
    ),
    Step(
        "agents.Conversation",
        _by("created_by_id"),
        why="Their conversations (and every message in them): deleted.",
    ),
    Step("agents.CachedResponse", _by("user_id"), why="Cached answers to them: deleted."),
    Step(
        "agents.WebhookDelivery",
        lambda s: (
            Q(run__created_by_id=s.user_id)
            | Q(
                workflow_run_id__in=apps.get_model("workflows.WorkflowRun")
                .objects.filter(created_by_id=s.user_id)
                .values("id")
            )
        ),
        scrub={"payload": {}},
        why="Webhook deliveries of their runs: the payload (their input and output) erased.",
    ),
    Step(
        "agents.AgentRun",
        _by("created_by_id"),
        scrub={
            "input": "",
            "output": "",
            "output_data": None,
            "error": "",
            "tool_steps": [],
            "callback_url": "",
            "created_by_id": None,
        },
        why="Agent runs they started: text erased; tokens and cost kept (usage and billing).",
    ),
    Step(
        "workflows.RecordedCall",
        lambda s: Q(step__run__created_by_id=s.user_id),
        scrub={"response": {}},
        why="Model answers recorded for their workflow runs: erased.",
    ),
    Step(
        "workflows.StepRun",
        lambda s: Q(run__created_by_id=s.user_id),
        scrub={"input": None, "output": None, "error": "", "decision_comment": ""},
        why="Steps of their workflow runs: inputs and outputs erased; tokens and cost kept.",
    ),
    Step(
        "workflows.StepRun",
        _by("decided_by_id"),
        scrub={"decided_by_id": None, "decision_comment": ""},
        why="Approvals they decided: the decision stays, who and their comment are erased.",
    ),
    Step(
        "workflows.WorkflowRun",
        _by("created_by_id"),
        scrub={
            "inputs": {},
            "output": None,
            "error": "",
            "callback_url": "",
            "created_by_id": None,
        },
        why="Workflow runs they started: inputs and outputs erased; tokens and cost kept.",
    ),
    *(
        Step(
            model,
            _by("created_by_id"),
            scrub={"created_by_id": None},
            why="Definitions they created belong to the workspace: kept, author link removed.",
        )
        for model in _DEFINITIONS
    ),
    Step(
        "guardian.UserObjectPermission",
        _by("user_id"),
        why="Object permissions granted to them: deleted.",
    ),
]


def erase_public(subject: Subject) -> int:
    """The public schema's rows about `subject`, plus their sign-in sessions; the caller
    anonymises the account row itself and holds the transaction."""
    erased = sum(step.apply(subject) for step in PUBLIC_STEPS)
    erased += _audit_metadata(subject)
    erased += _sessions(subject)
    return erased


def erase_workspace(subject: Subject) -> int:
    """The active workspace schema's rows about `subject`. Idempotent: a second pass finds
    nothing left to change (scrubbed rows no longer match, or match and are rewritten alike)."""
    return sum(step.apply(subject) for step in WORKSPACE_STEPS)


def _audit_metadata(subject: Subject) -> int:
    """Audit metadata that quotes the address (an invitation's `email`): rewritten."""
    events = (
        apps.get_model("tenants.AuditEvent")
        .objects.annotate(text=Cast("metadata", TextField()))
        .filter(text__icontains=subject.email)
    )
    changed = 0
    for event in events:
        event.metadata = _replace(event.metadata, subject.email, subject.label)
        event.save(update_fields=["metadata"])
        changed += 1
    return changed


def _replace(value: Any, needle: str, label: str) -> Any:
    if isinstance(value, str):
        return label if needle.lower() in value.lower() else value
    if isinstance(value, list):
        return [_replace(v, needle, label) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v, needle, label) for k, v in value.items()}
    return value


def _sessions(subject: Subject) -> int:
    """Sessions signed in as them. Sessions are not indexed by user, so this reads the live
    ones (expired rows are removed by `clearsessions`)."""
    from django.utils import timezone

    doomed = [
        session.pk
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if str(session.get_decoded().get("_auth_user_id")) == str(subject.user_id)
    ]
    deleted, _ = Session.objects.filter(pk__in=doomed).delete()
    return deleted


def anonymise_account(user: User, subject: Subject) -> None:
    """The account row becomes the tombstone every kept link points to: no address, no name,
    no password, no way to sign in."""
    user.email = f"deleted-user-{subject.user_id}@deleted.invalid"
    user.full_name = ""
    user.first_name = ""
    user.last_name = ""
    user.is_active = False
    user.is_staff = False
    user.is_superuser = False
    user.last_login = None
    user.set_unusable_password()
    user.save()
    user.groups.clear()
    user.user_permissions.clear()
