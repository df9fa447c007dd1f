from __future__ import annotations

from django import forms

from notifications.selectors import Channels


class PreferencesForm(forms.Form):
    """Two checkboxes per kind: `<kind>-in_app` and `<kind>-email` (none for kinds whose
    email is not the person's to switch off)."""

    def __init__(self, *args: object, channels: list[Channels], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.channels = channels
        for row in channels:
            self.fields[f"{row.kind}-in_app"] = forms.BooleanField(
                required=False, initial=row.in_app, label=f"{row.label}: in the inbox"
            )
            if row.email_choice:
                self.fields[f"{row.kind}-email"] = forms.BooleanField(
                    required=False, initial=row.email, label=f"{row.label}: by email"
                )

    def choices(self) -> dict[str, tuple[bool, bool]]:
        data = self.cleaned_data
        return {
            row.kind: (bool(data.get(f"{row.kind}-in_app")), bool(data.get(f"{row.kind}-email")))
            for row in self.channels
        }
