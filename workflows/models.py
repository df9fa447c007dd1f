"""Workflows: immutable versioned DAG definitions, runs and step runs (a state machine kept in
PostgreSQL, see docs/workflows.md), triggers, and the LLM/tool calls recorded for replay.

All of it lives in the workspace's schema. User ids are public-schema ids (plain integers).
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q


class Workflow(models.Model):
    name = models.CharField(max_length=80)
    description = models.CharField(max_length=500, blank=True)
    category = models.CharField(max_length=40, blank=True)
    active_version = models.ForeignKey(
        "WorkflowVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The published version: what runs use unless they pin another.",
    )
    template_key = models.CharField(
        max_length=60, blank=True, help_text="The library template it was created from."
    )
    # Installed from the marketplace: the public ListingVersion id it is a pinned copy of.
    listing_version_id = models.BigIntegerField(null=True, blank=True)
    # Offered to MCP clients as a tool (mcp_server; docs/mcp.md). Owner's choice, off by default.
    mcp_exposed = models.BooleanField(default=False)
    created_by_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class WorkflowVersion(models.Model):
    """One saved definition. Never updated: every save makes a new version."""

    class Source(models.TextChoices):
        EDITOR = "editor", "Editor"
        API = "api", "API"
        TEMPLATE = "template", "Template"
        GENERATED = "generated", "Generated from a description"
        IMPORT = "import", "Import"
        ROLLBACK = "rollback", "Rollback"

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    note = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.EDITOR)
    created_by_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="workflow_version_number"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.name} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValueError("Workflow versions are immutable; create a new version instead.")
        super().save(*args, **kwargs)


class Trigger(models.Model):
    """How a workflow starts without a person: a signed inbound webhook or a cron schedule."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Inbound webhook"
        SCHEDULE = "schedule", "Schedule"

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="triggers")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=80, blank=True)
    version = models.ForeignKey(
        WorkflowVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Pinned version; empty means the workflow's active version.",
    )
    enabled = models.BooleanField(default=True)
    # webhook: the public token in the URL and the HMAC secret (encrypted, shown once)
    token = models.CharField(max_length=48, blank=True, db_index=True)
    secret_encrypted = models.TextField(blank=True)
    # schedule: a 5-field cron expression in the given time zone, with fixed run inputs
    cron = models.CharField(max_length=120, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    inputs = models.JSONField(default=dict, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    created_by_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workflow", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.workflow_id}"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


RUN_FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class WorkflowRun(models.Model):
    class TriggerKind(models.TextChoices):
        MANUAL = "manual", "Run button"
        API = "api", "API"
        WEBHOOK = "webhook", "Inbound webhook"
        SCHEDULE = "schedule", "Schedule"
        RERUN = "rerun", "Re-run"
        SUBWORKFLOW = "subworkflow", "Sub-workflow"

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey(WorkflowVersion, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(
        max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    trigger = models.CharField(max_length=16, choices=TriggerKind.choices)
    trigger_ref = models.ForeignKey(
        Trigger, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    inputs = models.JSONField(default=dict, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    parent_step = models.ForeignKey(
        "StepRun",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="child_runs",
        help_text="The sub-workflow step that started this run.",
    )
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns"
    )
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    revision = models.PositiveIntegerField(
        default=0, help_text="Bumped on every change; live pages drop older messages."
    )
    created_by_id = models.BigIntegerField(null=True, blank=True)
    api_key_prefix = models.CharField(max_length=16, blank=True)
    callback_url = models.URLField(max_length=2000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["workflow", "-created_at"], name="run_workflow_recent")]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.workflow_id} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in RUN_FINISHED


class StepStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # not reached yet
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting"  # approval, webhook, sub-workflow, map items
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    CANCELLED = "cancelled", "Cancelled"


STEP_FINISHED = (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED)


class StepRun(models.Model):
    """One node of one run (or one item of a map node: `item_index` set, `parent` the map's
    step run). Created for every node when the run starts, so the run page shows the whole DAG."""

    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="steps")
    node_id = models.CharField(max_length=64)
    node_type = models.CharField(max_length=24)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="items"
    )
    item_index = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=StepStatus.choices, default=StepStatus.PENDING, db_index=True
    )
    attempt = models.PositiveSmallIntegerField(default=0, help_text="Attempts started so far.")
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    branch = models.CharField(
        max_length=64, blank=True, help_text="The branch a condition/router/approval chose."
    )
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    revision = models.PositiveIntegerField(
        default=0, help_text="Bumped on every change; live pages drop older messages."
    )
    # human approval / webhook wait
    resume_token = models.CharField(max_length=48, blank=True, db_index=True)
    decided_by_id = models.BigIntegerField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)
    # scheduling
    queued_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When a retry after backoff is due."
    )
    lease_until = models.DateTimeField(
        null=True, blank=True, help_text="A running step not finished by then is recovered."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "node_id"],
                condition=Q(item_index__isnull=True),
                name="one_step_run_per_node",
            ),
            models.UniqueConstraint(
                fields=["parent", "item_index"],
                condition=Q(item_index__isnull=False),
                name="one_step_run_per_map_item",
            ),
        ]

    def __str__(self) -> str:
        suffix = f"[{self.item_index}]" if self.item_index is not None else ""
        return f"{self.node_id}{suffix} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in STEP_FINISHED

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


class RecordedCall(models.Model):
    """An LLM or tool call made inside a step attempt, kept so that a redelivered attempt (or a
    resumed run) replays it instead of calling (and paying) again. Key: step run, attempt, index.
    An LLM call's record is written in the same transaction as its ledger row."""

    class Kind(models.TextChoices):
        LLM = "llm", "Model call"
        TOOL = "tool", "Tool call"

    step = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="recorded_calls")
    attempt = models.PositiveSmallIntegerField()
    index = models.PositiveIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of the request.")
    response = models.JSONField()
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["step", "attempt", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["step", "attempt", "kind", "index"], name="one_record_per_call"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.index} of step {self.step_id} attempt {self.attempt}"
