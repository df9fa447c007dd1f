from __future__ import annotations

from django import forms


class AllowedHostForm(forms.Form):
    host = forms.CharField(
        max_length=255,
        label="Host",
        help_text="api.example.com for that host only, *.example.com for all of its "
        "subdomains. No http://, path or port.",
        widget=forms.TextInput(
            attrs={
                "placeholder": "api.example.com",
                "autocomplete": "off",
                "spellcheck": "false",
                "autocapitalize": "none",
            }
        ),
    )
