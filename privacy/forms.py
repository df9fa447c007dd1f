from __future__ import annotations

from django import forms


class AccountDeleteForm(forms.Form):
    password = forms.CharField(
        label="Your password",
        strip=False,
        help_text="Enter it again to confirm it is you.",
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class WorkspaceDeleteForm(forms.Form):
    confirm = forms.CharField(
        max_length=40,
        label="Type the workspace address to confirm",
        widget=forms.TextInput(attrs={"autocapitalize": "none", "spellcheck": "false"}),
    )
