from __future__ import annotations

from typing import Any, cast

from django import forms

from tenants.models import Role
from tenants.permissions import API_KEY_SCOPES, assignable_roles


class WorkspaceCreateForm(forms.Form):
    name = forms.CharField(
        max_length=80,
        label="Workspace name",
        widget=forms.TextInput(
            attrs={"placeholder": "Acme Support", "autocomplete": "organization"}
        ),
    )
    slug = forms.CharField(
        max_length=40,
        label="Address",
        help_text="Lowercase letters, digits and hyphens. Your workspace lives at /w/<address>/.",
        widget=forms.TextInput(
            attrs={"placeholder": "acme-support", "autocapitalize": "none", "spellcheck": "false"}
        ),
    )


class WorkspaceSettingsForm(forms.Form):
    name = forms.CharField(max_length=80, label="Workspace name")
    run_retention_days = forms.IntegerField(
        min_value=0,
        max_value=3650,
        required=False,  # left out: unchanged
        label="Keep finished workflow runs for (days)",
        help_text="Finished runs older than this are deleted every night, with their steps. "
        "0 keeps them forever. Runs still going are never deleted.",
        widget=forms.NumberInput(attrs={"inputmode": "numeric", "style": "max-width:10rem"}),
    )


class _RoleChoiceMixin:
    fields: dict[str, forms.Field]

    def _limit_roles(self, actor_role: str) -> None:
        field = cast(forms.ChoiceField, self.fields["role"])
        field.choices = [(r.value, r.label) for r in assignable_roles(actor_role)]


class InviteForm(_RoleChoiceMixin, forms.Form):
    email = forms.EmailField(
        label="Email address",
        widget=forms.EmailInput(attrs={"placeholder": "teammate@example.com"}),
    )
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args: Any, actor_role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limit_roles(actor_role)


class RoleForm(_RoleChoiceMixin, forms.Form):
    role = forms.ChoiceField(choices=Role.choices)

    def __init__(self, *args: Any, actor_role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limit_roles(actor_role)


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=80,
        label="Key name",
        widget=forms.TextInput(attrs={"placeholder": "CI pipeline"}),
    )
    scopes = forms.MultipleChoiceField(
        choices=list(API_KEY_SCOPES.items()),
        widget=forms.CheckboxSelectMultiple,
        help_text="What the key may do. Keys never manage keys.",
    )
