from __future__ import annotations

from django import forms

from core.exceptions import ApplicationError


def form_add_application_error(form: forms.BaseForm, exc: ApplicationError) -> None:
    """Put a service's error beside the field it names (or above the form)."""
    placed = False
    for field, messages in exc.fields.items():
        if field in form.fields:
            for message in messages:
                form.add_error(field, message)
            placed = True
    if not placed:
        form.add_error(None, exc.message)
