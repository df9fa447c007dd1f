from __future__ import annotations

from django import forms

_PLAIN = {"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none"}


class McpConnectionForm(forms.Form):
    name = forms.CharField(
        max_length=20,
        help_text="Lower case letters, digits and _; agents' tools are named mcp__<name>__<tool>.",
        widget=forms.TextInput(attrs={"placeholder": "github", **_PLAIN}),
    )
    url = forms.URLField(
        max_length=2000,
        label="Server URL",
        assume_scheme="https",
        help_text="Its Streamable HTTP endpoint. The host must be on the Outbound access list.",
        widget=forms.URLInput(attrs={"placeholder": "https://mcp.example.com/mcp", **_PLAIN}),
    )
    header_name = forms.CharField(
        max_length=100,
        required=False,
        initial="Authorization",
        label="Credential header",
        widget=forms.TextInput(attrs=_PLAIN),
    )
    credential = forms.CharField(
        max_length=4000,
        required=False,
        help_text="Optional. Sent in that header (a bare token in Authorization as Bearer); "
        "stored encrypted and never shown again.",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
