from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, cast

from django import forms

from agents.cache.calibration import semantic_accuracy_statement
from agents.gateway.aliases import MAX_TARGETS
from agents.gateway.model_names import default_model, model_choices, model_problem
from agents.models import (
    AgentVersion,
    KnowledgeBase,
    McpServerConnection,
    MemoryMode,
    ProviderKind,
)
from agents.settings_schema import (
    CATEGORY_MAX_LENGTH,
    COST_CAP_DECIMAL_PLACES,
    COST_CAP_MAX_DIGITS,
    COST_CAP_MIN,
    DESCRIPTION_MAX_LENGTH,
    MAX_TOKENS,
    MAX_TOKENS_DEFAULT,
    MAX_TOOL_CALLS,
    MAX_TOOL_CALLS_DEFAULT,
    MEMORY_TURNS_DEFAULT,
    MODEL_MAX_LENGTH,
    NAME_MAX_LENGTH,
    PAGE_MEMORY_TURNS,
    TEMPERATURE_MAX,
    TEMPERATURE_MIN,
    output_schema_problem,
)
from agents.tools.mcp.client import tool_name
from agents.tools.registry import BUILTIN_TOOLS

BUILTIN_TOOL_CHOICES = [
    (name, f"{name} — {tool.description.split('. ')[0].rstrip('.')}")
    for name, tool in BUILTIN_TOOLS.items()
]


def mcp_tool_choices() -> list[tuple[str, str]]:
    """The tools of this workspace's MCP server connections, as last fetched."""
    return [
        (tool_name(c, t["name"]), f"{tool_name(c, t['name'])} — {t['description'][:80]}")
        for c in McpServerConnection.objects.order_by("name")
        for t in c.tools
    ]


class AgentForm(forms.Form):
    name = forms.CharField(max_length=NAME_MAX_LENGTH)
    description = forms.CharField(max_length=DESCRIPTION_MAX_LENGTH, required=False)
    category = forms.CharField(max_length=CATEGORY_MAX_LENGTH, required=False)
    mcp_exposed = forms.BooleanField(
        required=False,
        label="Offer as an MCP tool",
        help_text="MCP clients holding an API key of this workspace with the run scope can call "
        "this agent as a tool (see the MCP docs).",
    )
    model = forms.CharField(
        max_length=MODEL_MAX_LENGTH,
        # A picker of the names saving accepts (agents/gateway/model_names.py), grouped: this
        # workspace's aliases, each provider's priced models, the offline model.
        widget=forms.Select(),
        help_text="A model alias of this workspace, or a provider's model from the platform's "
        "price list. Aliases are set up under Models.",
    )
    system_prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), required=False)
    temperature = forms.FloatField(
        min_value=TEMPERATURE_MIN,
        max_value=TEMPERATURE_MAX,
        required=False,
        help_text=f"{TEMPERATURE_MIN}–{TEMPERATURE_MAX}. Empty: the model's default.",
    )
    max_tokens = forms.IntegerField(
        min_value=MAX_TOKENS.low, max_value=MAX_TOKENS.high, initial=MAX_TOKENS_DEFAULT
    )
    tools = forms.MultipleChoiceField(
        choices=[],  # BUILTIN_TOOL_CHOICES and this workspace's MCP tools, in __init__
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    max_tool_calls = forms.IntegerField(
        min_value=MAX_TOOL_CALLS.low,
        max_value=MAX_TOOL_CALLS.high,
        initial=MAX_TOOL_CALLS_DEFAULT,
        label="Max tool calls per turn",
    )
    max_cost_per_run_usd = forms.DecimalField(
        min_value=COST_CAP_MIN,
        max_digits=COST_CAP_MAX_DIGITS,
        decimal_places=COST_CAP_DECIMAL_PLACES,
        required=False,
        label="Max cost per run (USD)",
    )
    blocked_patterns = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        label="Blocked topics and output patterns",
        help_text="One regular expression per line. A question that matches is refused before "
        "any call; an answer that matches is withheld.",
    )
    memory_mode = forms.ChoiceField(
        choices=MemoryMode.choices,
        initial=MemoryMode.NONE,
        required=False,
        label="Memory in conversations",
        help_text="Last N turns resends recent turns; a running summary keeps long chats cheap.",
    )
    memory_turns = forms.IntegerField(
        min_value=PAGE_MEMORY_TURNS.low,
        max_value=PAGE_MEMORY_TURNS.high,
        initial=MEMORY_TURNS_DEFAULT,
        required=False,
        label="N (turns)",
    )
    knowledge_base_ids = forms.TypedMultipleChoiceField(
        coerce=int,
        choices=[],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Knowledge bases",
        help_text="What the knowledge_search tool may read.",
    )
    cache_enabled = forms.BooleanField(
        required=False,
        initial=True,
        label="Answer a question asked again from the cache",
        help_text="Only the same question (ignoring case, spacing and punctuation) in the same "
        "conversation context, version and knowledge gets a cached answer, at no cost. Answers "
        "that used http_request or current_time, and failed answers, are never cached.",
    )
    cache_semantic = forms.BooleanField(
        required=False,
        label="Also answer rephrased questions from the cache (semantic tier)",
    )
    cache_verify = forms.BooleanField(
        required=False,
        label="Check each rephrased hit with the agent's model before serving it",
        help_text="A short paid call per semantic hit, booked in the usage ledger; savings are "
        "reported net of it.",
    )
    cache_per_user = forms.BooleanField(
        required=False,
        label="Answers depend on who asks",
        help_text="Each person's cached answers are served only to them.",
    )
    output_schema = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false", "class": "mono"}),
        required=False,
        label="Output format (JSON schema)",
        help_text='Optional. e.g. {"type": "object", "properties": {"urgency": {"enum": '
        '["low", "high"]}}, "required": ["urgency"]}. Answers are checked against it.',
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = str(
            (self.data.get("model") if self.is_bound else self.initial.get("model")) or ""
        )
        if not current and not self.is_bound:
            current = default_model()
            self.initial["model"] = current
        model_widget = cast(forms.Select, self.fields["model"].widget)
        model_widget.choices = model_choices(current)
        field = cast(forms.TypedMultipleChoiceField, self.fields["knowledge_base_ids"])
        field.choices = [(kb.pk, kb.name) for kb in KnowledgeBase.objects.all()]
        tools = cast(forms.MultipleChoiceField, self.fields["tools"])
        tools.choices = [*BUILTIN_TOOL_CHOICES, *mcp_tool_choices()]
        self.fields["cache_semantic"].help_text = (
            "Off by default: a rephrased question can ask something else. "
            + semantic_accuracy_statement()
        )

    def clean_model(self) -> str:
        model = str(self.cleaned_data["model"]).strip()
        problem = model_problem(model)
        if problem:
            raise forms.ValidationError(problem)
        return model

    def clean_memory_mode(self) -> str:
        return str(self.cleaned_data["memory_mode"] or MemoryMode.NONE)

    def clean_memory_turns(self) -> int:
        return int(self.cleaned_data["memory_turns"] or MEMORY_TURNS_DEFAULT)

    def clean_blocked_patterns(self) -> list[str]:
        text: str = self.cleaned_data["blocked_patterns"]
        return [line.strip() for line in text.splitlines() if line.strip()]

    def clean_output_schema(self) -> dict[str, Any] | None:
        text: str = self.cleaned_data["output_schema"].strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from exc
        problem = output_schema_problem(value)
        if problem:
            raise forms.ValidationError(problem)
        return cast(dict[str, Any], value)

    @classmethod
    def initial_from(cls, agent: Any, version: AgentVersion | None) -> dict[str, Any]:
        initial = {
            "name": agent.name,
            "description": agent.description,
            "category": agent.category,
            "mcp_exposed": agent.mcp_exposed,
        }
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
                memory_mode=version.memory_mode,
                memory_turns=version.memory_turns,
                knowledge_base_ids=version.knowledge_base_ids,
                cache_enabled=version.cache_enabled,
                cache_semantic=version.cache_semantic,
                cache_verify=version.cache_verify,
                cache_per_user=version.cache_per_user,
                output_schema=json.dumps(version.output_schema, indent=2)
                if version.output_schema
                else "",
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
        # A refused submission keeps the key typed (the answer to that POST goes only to the
        # person who typed it, and is never cached); a saved key is never shown again.
        widget=forms.PasswordInput(render_value=True),
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


class AliasForm(forms.Form):
    name = forms.CharField(
        max_length=40,
        help_text="What agents write as their model, e.g. smart or fast-cheap.",
        widget=forms.TextInput(attrs={"placeholder": "smart"}),
    )
    description = forms.CharField(max_length=200, required=False)


class AliasTargetForm(forms.Form):
    """One row of an alias's fallback order."""

    kind = forms.ChoiceField(label="Provider", choices=ProviderKind.choices)
    credential = forms.TypedChoiceField(
        label="Key",
        coerce=int,
        empty_value=None,
        required=False,
        help_text="Empty: the platform's key for that provider.",
    )
    model = forms.CharField(
        max_length=128,
        required=False,  # an empty row is skipped
        widget=forms.TextInput(attrs={"placeholder": "claude-sonnet-4-5"}),
    )

    def __init__(self, *args: Any, credentials: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.TypedChoiceField, self.fields["credential"])
        field.choices = [("", "Platform default"), *credentials]


AliasTargetFormSet = forms.formset_factory(
    AliasTargetForm, extra=2, can_delete=True, max_num=MAX_TARGETS, validate_max=True
)
