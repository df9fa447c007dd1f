from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from evals.models import Case, CaseResult, Dataset, Evaluation, Suite


class DatasetInput(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=80)
    filename = serializers.CharField(
        max_length=200, help_text="Its extension says the format: .csv or .jsonl."
    )
    content = serializers.CharField(
        max_length=2 * 1024 * 1024, trim_whitespace=False, help_text="The file's text."
    )


class CaseOutput(serializers.ModelSerializer[Case]):
    class Meta:
        model = Case
        fields = ["position", "input", "expected"]


class DatasetOutput(serializers.ModelSerializer[Dataset]):
    case_count = serializers.IntegerField()

    class Meta:
        model = Dataset
        fields = ["id", "name", "description", "case_count", "created_at"]


class DatasetDetailOutput(DatasetOutput):
    cases = CaseOutput(many=True, read_only=True)

    class Meta(DatasetOutput.Meta):
        fields = [*DatasetOutput.Meta.fields, "cases"]


class SuiteInput(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=80)
    dataset = serializers.IntegerField(min_value=1)
    evaluators = serializers.ListField(
        child=serializers.DictField(), help_text="Evaluator specs (docs/evals.md)."
    )
    pass_threshold = serializers.DecimalField(
        max_digits=4,
        decimal_places=3,
        min_value=Decimal(0),
        max_value=Decimal(1),
        default=Decimal(1),
    )


class SuiteOutput(serializers.ModelSerializer[Suite]):
    class Meta:
        model = Suite
        fields = ["id", "name", "dataset", "evaluators", "pass_threshold", "created_at"]


class EvaluationInput(serializers.Serializer[Any]):
    suite = serializers.IntegerField(min_value=1)
    agent = serializers.IntegerField(
        min_value=1, required=False, allow_null=True, help_text="The agent (or a workflow)."
    )
    workflow = serializers.IntegerField(
        min_value=1, required=False, allow_null=True, help_text="The workflow (or an agent)."
    )
    version = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        help_text="Default: the agent's current version, the workflow's active one.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if (attrs.get("agent") is None) == (attrs.get("workflow") is None):
            raise serializers.ValidationError(
                {"agent": ["Give an agent or a workflow (one of them)."]}
            )
        return attrs


class EvaluationOutput(serializers.ModelSerializer[Evaluation]):
    score = serializers.DecimalField(max_digits=5, decimal_places=4, allow_null=True)
    agent_version_number = serializers.IntegerField(
        source="version_number", read_only=True, help_text="Deprecated: use version_number."
    )

    class Meta:
        model = Evaluation
        fields = [
            "id",
            "suite",
            "target",
            "target_name",
            "agent_id",
            "workflow_id",
            "version_number",
            "agent_version_number",
            "status",
            "cases_total",
            "cases_done",
            "cases_passed",
            "score",
            "cost_usd",
            "created_at",
            "finished_at",
        ]


class VerdictOutput(serializers.Serializer[Any]):
    evaluator = serializers.CharField()
    passed = serializers.BooleanField()
    detail = serializers.CharField()


class CaseResultOutput(serializers.ModelSerializer[CaseResult]):
    position = serializers.IntegerField(source="case.position")
    input = serializers.CharField(source="case.input")
    verdicts = VerdictOutput(many=True)

    class Meta:
        model = CaseResult
        fields = [
            "position",
            "input",
            "output",
            "error",
            "passed",
            "verdicts",
            "cost_usd",
            "latency_ms",
            "run_id",
        ]
