"""Workflow API shapes: inputs are validated here (400 naming the field), outputs documented
for the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import InputSerializer
from workflows import selectors
from workflows.models import RunStatus, StepRun, Workflow, WorkflowRun, WorkflowVersion
from workflows.run_selectors import run_steps
from workflows.triggers import resume_url

# --- Workflows and versions


class WorkflowOutput(serializers.ModelSerializer[Workflow]):
    active_version = serializers.IntegerField(
        source="active_version.number",
        allow_null=True,
        read_only=True,
        help_text="Number of the published version runs use unless they pin another.",
    )

    class Meta:
        model = Workflow
        fields = [
            "id",
            "name",
            "description",
            "category",
            "active_version",
            "template_key",
            "created_at",
            "updated_at",
            "archived_at",
        ]


class WorkflowCreateInput(InputSerializer):
    name = serializers.CharField(max_length=80)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    category = serializers.CharField(max_length=40, required=False, allow_blank=True)
    definition = serializers.JSONField(
        help_text="The workflow definition (docs/workflows.md). Version 1 is published."
    )
    note = serializers.CharField(max_length=200, required=False, allow_blank=True)


class WorkflowUpdateInput(InputSerializer):
    name = serializers.CharField(max_length=80, required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    category = serializers.CharField(max_length=40, required=False, allow_blank=True)


class WorkflowVersionOutput(serializers.ModelSerializer[WorkflowVersion]):
    is_active = serializers.SerializerMethodField()

    class Meta:
        model = WorkflowVersion
        fields = ["number", "note", "source", "is_active", "created_by_id", "created_at"]

    def get_is_active(self, version: WorkflowVersion) -> bool:
        return bool(version.workflow.active_version_id == version.pk)


class WorkflowVersionDetailOutput(WorkflowVersionOutput):
    problems = serializers.SerializerMethodField(
        help_text="What keeps this version from being published or run, each naming its step "
        "and field ([] when nothing does): a draft saved from the builder may be incomplete."
    )

    class Meta(WorkflowVersionOutput.Meta):
        fields = [*WorkflowVersionOutput.Meta.fields, "definition", "problems"]

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_problems(self, version: WorkflowVersion) -> list[str]:
        return selectors.version_problems(version)


class WorkflowVersionCreateInput(InputSerializer):
    definition = serializers.JSONField()
    note = serializers.CharField(max_length=200, required=False, allow_blank=True)
    publish = serializers.BooleanField(
        default=False, help_text="Also make the new version the active one."
    )
    based_on_version = serializers.IntegerField(
        source="based_on",
        min_value=1,
        required=False,
        help_text="Number of the version this definition was edited from. If another version "
        "is the latest by now, nothing is saved and the answer is 409 naming it. Omitted: "
        "saved whatever the latest version is.",
    )


class WorkflowDiffInput(serializers.Serializer[Any]):
    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # `from` is a keyword, so the fields cannot be class attributes.
        return {
            "from": serializers.IntegerField(min_value=1),
            "to": serializers.IntegerField(min_value=1),
        }


class WorkflowFieldChangeOutput(serializers.Serializer[Any]):
    field = serializers.CharField()
    old = serializers.JSONField(allow_null=True)
    new = serializers.JSONField(allow_null=True)


class WorkflowStepChangeOutput(serializers.Serializer[Any]):
    step = serializers.CharField()
    changes = WorkflowFieldChangeOutput(many=True)


class WorkflowEdgeOutput(serializers.Serializer[Any]):
    """An edge as the definition writes it: `from`, `to`, `branch`."""

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # `from` is a keyword, so the fields cannot be class attributes.
        return {
            "from": serializers.CharField(source="source"),
            "to": serializers.CharField(source="target"),
            "branch": serializers.CharField(allow_blank=True),
        }


class WorkflowDiffOutput(serializers.Serializer[Any]):
    from_version = serializers.IntegerField()
    to_version = serializers.IntegerField()
    steps_added = serializers.ListField(child=serializers.CharField())
    steps_removed = serializers.ListField(child=serializers.CharField())
    steps_changed = WorkflowStepChangeOutput(many=True)
    edges_added = WorkflowEdgeOutput(many=True)
    edges_removed = WorkflowEdgeOutput(many=True)
    inputs_changed = WorkflowFieldChangeOutput(
        many=True, help_text="Run inputs added, removed or changed (`field` is the input name)."
    )
    output_changed = serializers.BooleanField(help_text="Whether the run output mapping changed.")
    text = serializers.CharField(help_text="Unified diff of the two definitions (pretty JSON).")


# --- Runs and steps


class WorkflowRunStartInput(InputSerializer):
    inputs = serializers.DictField(
        required=False, default=dict, help_text="Checked against the definition's `inputs`."
    )
    version = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        help_text="Pin a version number; empty runs the active version.",
    )
    callback_url = serializers.URLField(
        max_length=2000,
        required=False,
        allow_blank=True,
        help_text="Gets a signed POST (event `workflow_run.finished`) when the run ends.",
    )


class WorkflowListFilterInput(serializers.Serializer[Any]):
    include_archived = serializers.BooleanField(
        required=False, default=False, help_text="Also list archived ones."
    )


class WorkflowFilterInput(serializers.Serializer[Any]):
    workflow = serializers.IntegerField(
        min_value=1, required=False, help_text="Only runs of this workflow."
    )


class WorkflowRunFilterInput(serializers.Serializer[Any]):
    status = serializers.ChoiceField(
        choices=RunStatus.choices, required=False, help_text="Only runs in this state."
    )
    version = serializers.IntegerField(
        min_value=1, required=False, help_text="Only runs of this version number."
    )
    trigger = serializers.ChoiceField(
        choices=WorkflowRun.TriggerKind.choices, required=False, help_text="How runs started."
    )
    date_from = serializers.DateField(required=False, help_text="Runs created on or after (UTC).")
    date_to = serializers.DateField(
        required=False, help_text="Runs created on or before (UTC); not before `date_from`."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("date_from"), attrs.get("date_to")
        if start and end and start > end:
            raise serializers.ValidationError({"date_to": "Must not be before date_from."})
        return attrs


class WorkflowStepItemOutput(serializers.ModelSerializer[StepRun]):
    duration_ms = serializers.IntegerField(allow_null=True, read_only=True)

    class Meta:
        model = StepRun
        fields = [
            "id",
            "node_id",
            "node_type",
            "item_index",
            "status",
            "attempt",
            "input",
            "output",
            "error",
            "branch",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "started_at",
            "finished_at",
            "duration_ms",
        ]


class WorkflowStepOutput(WorkflowStepItemOutput):
    run = serializers.IntegerField(source="run_id", read_only=True)
    items = serializers.SerializerMethodField(help_text="A map step's per-item runs, in order.")
    decided_by_id = serializers.IntegerField(allow_null=True, read_only=True)
    resume_url = serializers.SerializerMethodField(
        help_text="A waiting webhook-wait step resumes when a signed JSON body is posted here."
    )

    class Meta(WorkflowStepItemOutput.Meta):
        fields = [
            "run",
            *WorkflowStepItemOutput.Meta.fields,
            "next_attempt_at",
            "decided_by_id",
            "decision_comment",
            "resume_url",
            "items",
        ]

    @extend_schema_field(WorkflowStepItemOutput(many=True))
    def get_items(self, step: StepRun) -> list[dict[str, Any]]:
        items = getattr(step, "map_items", None)
        if items is None:
            if step.node_type != "map":
                return []
            items = sorted(step.items.all(), key=lambda s: s.item_index or 0)
        return list(WorkflowStepItemOutput(items, many=True).data)

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_resume_url(self, step: StepRun) -> str | None:

        if step.node_type != "webhook_wait" or step.status != "waiting" or not step.resume_token:
            return None
        workspace = self.context.get("workspace")
        if workspace is None:
            return None
        return resume_url(workspace=workspace, resume_token=step.resume_token)


class WorkflowRunOutput(serializers.ModelSerializer[WorkflowRun]):
    workflow_name = serializers.CharField(source="workflow.name", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)

    class Meta:
        model = WorkflowRun
        fields = [
            "id",
            "workflow",
            "workflow_name",
            "version",
            "status",
            "trigger",
            "inputs",
            "output",
            "error",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "rerun_of",
            "callback_url",
            "created_at",
            "started_at",
            "finished_at",
        ]


class WorkflowRunDetailOutput(WorkflowRunOutput):
    steps = serializers.SerializerMethodField(
        help_text="Top-level steps in definition order (map steps carry their items)."
    )

    class Meta(WorkflowRunOutput.Meta):
        fields = [*WorkflowRunOutput.Meta.fields, "steps"]

    @extend_schema_field(WorkflowStepOutput(many=True))
    def get_steps(self, run: WorkflowRun) -> list[dict[str, Any]]:
        steps = self.context.get("steps")
        if steps is None:
            steps = run_steps(run)
        return list(WorkflowStepOutput(steps, many=True, context=self.context).data)


class WorkflowApprovalInput(InputSerializer):
    approved = serializers.BooleanField()
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


# --- Templates, export and import


class WorkflowTemplateOutput(serializers.Serializer[Any]):
    key = serializers.CharField()
    name = serializers.CharField()
    category = serializers.CharField()
    description = serializers.CharField()
    example_inputs = serializers.JSONField()


class WorkflowTemplateDetailOutput(WorkflowTemplateOutput):
    definition = serializers.JSONField()


class WorkflowTemplateInstantiateInput(InputSerializer):
    name = serializers.CharField(
        max_length=80, required=False, allow_blank=True, help_text="Default: the template's name."
    )


class WorkflowExportInput(serializers.Serializer[Any]):
    format = serializers.ChoiceField(
        choices=["json", "yaml"], required=False, help_text="Default json."
    )
    version = serializers.IntegerField(
        min_value=1, required=False, help_text="Default: the active version."
    )


class WorkflowImportInput(InputSerializer):
    document = serializers.CharField(
        max_length=2_000_000, help_text="A workflow exported as JSON or YAML."
    )
    format = serializers.ChoiceField(
        choices=["json", "yaml"],
        required=False,
        allow_null=True,
        help_text="Default: detected from the document.",
    )
    name = serializers.CharField(
        max_length=80, required=False, allow_blank=True, help_text="Default: the document's name."
    )


class WorkflowStepTestInput(InputSerializer):
    sample = serializers.JSONField(
        required=False,
        help_text='What the step reads: {"input": {...}, "steps": {step id: output}}. Omitted: '
        "the last run's inputs and the outputs of the steps this one reads (or a skeleton of "
        "the workflow's inputs when it has no run).",
    )


class WorkflowStepTestOutput(serializers.Serializer[Any]):
    step = serializers.CharField(source="step_id")
    node_type = serializers.CharField()
    succeeded = serializers.BooleanField()
    output = serializers.JSONField(allow_null=True)
    branch = serializers.CharField(allow_blank=True)
    input = serializers.JSONField(
        allow_null=True, help_text="What the step was given (a rendered prompt, tool arguments)."
    )
    error = serializers.CharField(allow_blank=True)
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=14, decimal_places=6)
    duration_ms = serializers.IntegerField()
    sample = serializers.JSONField(help_text="The sample the step ran on.")
