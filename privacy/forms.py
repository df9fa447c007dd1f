from __future__ import annotations

from typing import Any

from django import forms


class AccountDeleteForm(forms.Form):
    """For an account with a password: the password. For one that signs in only through a
    workspace's identity provider (SSO, no password): its email address, typed, and a sign-in
    in the last few minutes (checked by the service)."""

    password = forms.CharField(
        label="Your password",
        strip=False,
        required=False,
        help_text="Enter it again to confirm it is you.",
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    confirm_email = forms.CharField(
        label="Type your email address to confirm",
        required=False,
        max_length=254,
        widget=forms.TextInput(
            attrs={"autocapitalize": "none", "spellcheck": "false", "autocomplete": "off"}
        ),
    )

    def __init__(self, *args: Any, has_password: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        unused = "confirm_email" if has_password else "password"
        del self.fields[unused]


class WorkspaceDeleteForm(forms.Form):
    confirm = forms.CharField(
        max_length=40,
        label="Type the workspace address to confirm",
        widget=forms.TextInput(attrs={"autocapitalize": "none", "spellcheck": "false"}),
    )
