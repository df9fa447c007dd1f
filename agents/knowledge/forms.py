from __future__ import annotations

from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile

from agents.knowledge.parsers import CONTENT_TYPES
from agents.knowledge.selectors import TOP_K_MAX


class KnowledgeBaseForm(forms.Form):
    name = forms.CharField(
        max_length=80, help_text="What it holds, e.g. “Help center” or “Returns policy”."
    )
    description = forms.CharField(
        max_length=300,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Shown to builders choosing which knowledge an agent reads.",
    )


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """One or more files; `cleaned_data` holds a list. Empty files pass here so the service
    can refuse them with its own message."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        accept = ",".join(sorted(CONTENT_TYPES))
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": accept}))
        kwargs.setdefault("allow_empty_file", True)
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile[bytes]]:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data] or [single(None, initial)]
        return [single(data, initial)]


class UploadForm(forms.Form):
    file = MultipleFileField(
        label="Files",
        error_messages={"required": "Choose at least one file to upload."},
    )


class SearchForm(forms.Form):
    q = forms.CharField(
        label="Question",
        max_length=1000,
        error_messages={"required": "Type a question to search for."},
        widget=forms.TextInput(
            attrs={"placeholder": "e.g. How long do refunds take?", "type": "search"}
        ),
    )
    top_k = forms.IntegerField(
        label="Passages", min_value=1, max_value=TOP_K_MAX, initial=5, required=False
    )
