from __future__ import annotations

from typing import Any

from rest_framework import serializers

from core.serializers import InputSerializer
from tenants.models import ApiKey, AuditEvent, Invitation, Membership, Role, Workspace
from tenants.permissions import API_KEY_SCOPES


class WorkspaceOutput(serializers.ModelSerializer[Workspace]):
    class Meta:
        model = Workspace
        fields = ["id", "name", "slug", "created_at"]


class MembershipWorkspaceOutput(serializers.Serializer[Any]):
    id = serializers.IntegerField(source="workspace.id")
    name = serializers.CharField(source="workspace.name")
    slug = serializers.CharField(source="workspace.slug")
    role = serializers.CharField()
    created_at = serializers.DateTimeField(source="workspace.created_at")


class WorkspaceCreateInput(InputSerializer):
    name = serializers.CharField(max_length=80)
    slug = serializers.CharField(max_length=40)


class WorkspaceUpdateInput(InputSerializer):
    name = serializers.CharField(max_length=80)


class MemberOutput(serializers.ModelSerializer[Membership]):
    email = serializers.EmailField(source="user.email")
    name = serializers.CharField(source="user.display_name")
    joined_at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Membership
        fields = ["id", "email", "name", "role", "joined_at"]


class MemberUpdateInput(InputSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationOutput(serializers.ModelSerializer[Invitation]):
    invited_by = serializers.EmailField(
        source="invited_by.email",
        default=None,
        allow_null=True,
        help_text="Null when the inviter's account no longer exists.",
    )

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "invited_by", "created_at", "expires_at"]


class InvitationInput(InputSerializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)


class ApiKeyOutput(serializers.ModelSerializer[ApiKey]):
    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
        ]


class ApiKeyCreatedOutput(ApiKeyOutput):
    key = serializers.CharField(help_text="The full secret. Shown once; store it now.")

    class Meta(ApiKeyOutput.Meta):
        fields = [*ApiKeyOutput.Meta.fields, "key"]


class ApiKeyInput(InputSerializer):
    name = serializers.CharField(max_length=80)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=list(API_KEY_SCOPES)), allow_empty=False, min_length=1
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class AuditEventOutput(serializers.ModelSerializer[AuditEvent]):
    actor = serializers.CharField(source="actor_label")

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "action",
            "actor",
            "target_type",
            "target_id",
            "target_label",
            "ip_address",
            "request_id",
            "metadata",
        ]
