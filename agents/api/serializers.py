from __future__ import annotations

from rest_framework import serializers

from agents.models import Agent, AgentRun, AgentVersion, MemoryMode
from agents.settings_schema import (
    CATEGORY_MAX_LENGTH,
    COST_CAP_DECIMAL_PLACES,
    COST_CAP_MAX_DIGITS,
    DESCRIPTION_MAX_LENGTH,
    MAX_TOOL_CALLS,
    MEMORY_TURNS,
    MODEL_MAX_LENGTH,
    NAME_MAX_LENGTH,
    VERSION_FIELDS,
)
from core.serializers import CachedFieldsMixin, InputSerializer


class AgentVersionOutput(CachedFieldsMixin, serializers.ModelSerializer[AgentVersion]):
    class Meta:
        model = AgentVersion
        fields = ["number", *VERSION_FIELDS, "created_at"]


class AgentOutput(CachedFieldsMixin, serializers.ModelSerializer[Agent]):
    current_version = AgentVersionOutput()

    class Meta:
        model = Agent
        fields = [
            "id",
            "name",
            "description",
            "category",
            "current_version",
            "created_at",
            "updated_at",
            "archived_at",
        ]


class AgentDetailOutput(AgentOutput):
    used_by_workflows = serializers.SerializerMethodField(
        help_text="How many workflows (not archived) have an agent step holding this agent, in "
        "their published or latest version. Renaming keeps them running it; archiving stops "
        "them."
    )

    class Meta(AgentOutput.Meta):
        fields = [*AgentOutput.Meta.fields, "used_by_workflows"]

    def get_used_by_workflows(self, agent: Agent) -> int:
        return len(self.context.get("uses", {}).get(agent.pk, []))


class AgentConfigInput(InputSerializer):
    model = serializers.CharField(
        max_length=MODEL_MAX_LENGTH,
        help_text="A model alias of this workspace, provider:model from the platform's price "
        "table, or offline:<name>. Anything else is refused (400, field `model`).",
    )
    system_prompt = serializers.CharField(required=False, allow_blank=True)
    temperature = serializers.FloatField(required=False, allow_null=True)
    max_tokens = serializers.IntegerField(required=False)
    tools = serializers.ListField(child=serializers.CharField(), required=False)
    memory_mode = serializers.ChoiceField(choices=MemoryMode.choices, required=False)
    memory_turns = serializers.IntegerField(
        required=False, min_value=MEMORY_TURNS.low, max_value=MEMORY_TURNS.high
    )
    max_tool_calls = serializers.IntegerField(
        required=False, min_value=MAX_TOOL_CALLS.low, max_value=MAX_TOOL_CALLS.high
    )
    max_cost_per_run_usd = serializers.DecimalField(
        max_digits=COST_CAP_MAX_DIGITS,
        decimal_places=COST_CAP_DECIMAL_PLACES,
        required=False,
        allow_null=True,
    )
    blocked_patterns = serializers.ListField(child=serializers.CharField(), required=False)
    output_schema = serializers.JSONField(required=False, allow_null=True)
    knowledge_base_ids = serializers.ListField(child=serializers.IntegerField(), required=False)
    cache_enabled = serializers.BooleanField(
        required=False, help_text="The exact tier: a question asked again in the same context."
    )
    cache_semantic = serializers.BooleanField(
        required=False, help_text="The semantic tier: rephrased questions (off by default)."
    )
    cache_verify = serializers.BooleanField(
        required=False, help_text="Ask the model to confirm each semantic hit (paid)."
    )
    cache_per_user = serializers.BooleanField(
        required=False, help_text="Keep each person's cached answers to them."
    )


class AgentCreateInput(AgentConfigInput):
    name = serializers.CharField(
        max_length=NAME_MAX_LENGTH,
        help_text="Unique among the workspace's active agents, ignoring case (400, field `name`).",
    )
    description = serializers.CharField(
        max_length=DESCRIPTION_MAX_LENGTH, required=False, allow_blank=True
    )
    category = serializers.CharField(
        max_length=CATEGORY_MAX_LENGTH, required=False, allow_blank=True
    )


class AgentUpdateInput(AgentCreateInput):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        for field in self.fields.values():
            field.required = False


class RunInput(InputSerializer):
    input = serializers.CharField(max_length=100_000)
    callback_url = serializers.URLField(
        max_length=2000,
        required=False,
        allow_blank=True,
        help_text="Gets a signed POST when the run ends (see docs/api.md, Webhooks).",
    )


class RunOutput(serializers.ModelSerializer[AgentRun]):
    agent_version = serializers.IntegerField(source="version.number")

    class Meta:
        model = AgentRun
        fields = [
            "id",
            "agent",
            "agent_version",
            "status",
            "input",
            "callback_url",
            "output",
            "output_data",
            "cache_hit",
            "cache_reported_at",
            "error",
            "tool_steps",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "created_at",
            "started_at",
            "finished_at",
        ]
