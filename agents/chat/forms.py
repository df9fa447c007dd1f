from __future__ import annotations

from typing import Any, cast

from django import forms

from agents.models import Agent
from agents.services import MAX_INPUT_CHARS


class QuestionForm(forms.Form):
    question = forms.CharField(
        label="Your question",
        max_length=MAX_INPUT_CHARS,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Ask the agent something…"}),
        error_messages={
            "required": "Write a question first.",
            "max_length": "A question can be at most %(limit_value)d characters "
            "(this one has %(show_value)d).",
        },
    )


class ConversationStartForm(QuestionForm):
    agent = forms.TypedChoiceField(
        label="Agent",
        coerce=int,
        error_messages={
            "required": "Choose the agent to talk to.",
            "invalid_choice": "Choose one of the active agents of this workspace.",
        },
    )
    field_order = ["agent", "question"]

    def __init__(self, *args: Any, agents: list[Agent], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.TypedChoiceField, self.fields["agent"])
        field.choices = [("", "Choose an agent…"), *((a.pk, a.name) for a in agents)]
