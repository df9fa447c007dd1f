from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from agents.models import AgentVersion
from agents.tools.registry import BUILTIN_TOOLS


class AgentForm(forms.Form):
    name = forms.CharField(max_length=80)
    description = forms.CharField(max_length=300, required=False)
    category = forms.CharField(max_length=40, required=False)
    model = forms.CharField(
        max_length=170,
        initial="default",
        help_text="A model alias of this workspace (e.g. default) or provider:model, e.g. "
        "anthropic:claude-sonnet-4-5 or offline:demo.",
    )
    system_prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), required=False)
    temperature = forms.FloatField(
        min_value=0, max_value=2, required=False, help_text="0–2. Empty: the model's default."
    )
    max_tokens = forms.IntegerField(min_value=1, max_value=200_000, initial=1024)
    tools = forms.MultipleChoiceField(
        choices=[(name, tool.description) for name, tool in BUILTIN_TOOLS.items()],
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    max_tool_calls = forms.IntegerField(
        min_value=0, max_value=50, initial=8, label="Max tool calls per turn"
    )
    max_cost_per_run_usd = forms.DecimalField(
        min_value=Decimal("0.0001"),
        max_digits=10,
        decimal_places=4,
        required=False,
        label="Max cost per run (USD)",
    )
    blocked_patterns = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="One regular expression per line; an answer that matches is withheld.",
    )

    def clean_blocked_patterns(self) -> list[str]:
        text: str = self.cleaned_data["blocked_patterns"]
        return [line.strip() for line in text.splitlines() if line.strip()]

    @classmethod
    def initial_from(cls, agent: Any, version: AgentVersion | None) -> dict[str, Any]:
        initial = {"name": agent.name, "description": agent.description, "category": agent.category}
        if version is not None:
            initial.update(
                model=version.model,
                system_prompt=version.system_prompt,
                temperature=version.temperature,
                max_tokens=version.max_tokens,
                tools=version.tools,
                max_tool_calls=version.max_tool_calls,
                max_cost_per_run_usd=version.max_cost_per_run_usd,
                blocked_patterns="\n".join(version.blocked_patterns),
            )
        return initial


class RunForm(forms.Form):
    input = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), max_length=100_000, label="Input"
    )


class CredentialForm(forms.Form):
    name = forms.CharField(
        max_length=60, widget=forms.TextInput(attrs={"placeholder": "Production Anthropic"})
    )
    kind = forms.ChoiceField(
        label="Provider",
        choices=[
            ("anthropic", "Anthropic"),
            ("openai", "OpenAI"),
            ("openai_compatible", "OpenAI-compatible (Ollama, vLLM, LM Studio)"),
        ],
    )
    base_url = forms.URLField(
        required=False,
        label="Base URL",
        help_text="OpenAI-compatible servers (required), or a proxy in front of a provider.",
    )
    api_key = forms.CharField(
        required=False,
        label="API key",
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted; only its last four characters are shown.",
    )


class CheckForm(forms.Form):
    model = forms.CharField(max_length=128)


class BudgetForm(forms.Form):
    monthly_cap_usd = forms.DecimalField(
        label="Monthly budget (USD)",
        required=False,
        min_value=Decimal("0.01"),
        max_digits=12,
        decimal_places=2,
        help_text="Empty: no cap. Calls that could exceed it are refused.",
    )
