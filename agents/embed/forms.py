from __future__ import annotations

from typing import Any, cast

from django import forms

from agents.embed.services import MAX_LOGO_BYTES
from agents.models import Agent


class ShareCreateForm(forms.Form):
    agent = forms.TypedChoiceField(coerce=int, label="Agent")
    title = forms.CharField(
        max_length=80,
        required=False,
        label="Name visitors see",
        help_text="Default: the agent's name.",
    )

    def __init__(self, *args: Any, agents: list[Agent], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.TypedChoiceField, self.fields["agent"])
        field.choices = [("", "Choose an agent…"), *((a.pk, a.name) for a in agents)]


class ShareSettingsForm(forms.Form):
    title = forms.CharField(max_length=80, label="Name visitors see")
    greeting = forms.CharField(
        max_length=300,
        required=False,
        label="Greeting",
        help_text="Shown before the first message.",
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    accent_colour = forms.RegexField(
        regex=r"^#[0-9a-fA-F]{6}$",
        label="Accent colour",
        error_messages={"invalid": "Write a colour like #4f46e5."},
        widget=forms.TextInput(attrs={"type": "color"}),
    )
    show_powered_by = forms.BooleanField(required=False, label="Show “Powered by Agent Market”")
    allowed_origins = forms.CharField(
        required=False,
        label="Sites that may embed the widget",
        help_text="One origin a line, like https://www.example.com. No origin: the chat can "
        "only be opened as its own page.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    logo = forms.FileField(
        required=False,
        label="Logo",
        help_text=f"PNG, JPEG, GIF or WebP, at most {MAX_LOGO_BYTES // 1024} KB.",
        widget=forms.ClearableFileInput(
            attrs={"accept": "image/png,image/jpeg,image/gif,image/webp"}
        ),
    )
    remove_logo = forms.BooleanField(required=False, label="Remove the logo")

    def origins(self) -> list[str]:
        return [line for line in self.cleaned_data["allowed_origins"].splitlines() if line.strip()]
