"""Evaluations, in each workspace's schema: datasets of cases, suites (a dataset and its
evaluators), evaluations of one agent or workflow version and their per-case results (and, for a
workflow, the run that answers each case), and the workspace's release gates."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import models


class Dataset(models.Model):
    name = models.CharField(max_length=80, unique=True)
    description = models.CharField(max_length=300, blank=True)
    created_by_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Case(models.Model):
    """One input and what is expected of its answer (`expected`: exact text, or empty)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="cases")
    position = models.PositiveIntegerField()
    input = models.TextField()
    expected = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "position"], name="evals_case_position")
        ]

    def __str__(self) -> str:
        return f"{self.dataset_id}#{self.position}"


class Suite(models.Model):
    """A dataset and the evaluators every case's answer must pass (evals/evaluators.py)."""

    name = models.CharField(max_length=80, unique=True)
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="suites")
    evaluators = models.JSONField(default=list)
    pass_threshold = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("1"),
        help_text="The share of cases that must pass (0–1) for the evaluation to pass.",
    )
    created_by_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(pass_threshold__gte=0, pass_threshold__lte=1),
                name="evals_suite_threshold_range",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Evaluation(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"

    class Target(models.TextChoices):
        AGENT = "agent", "Agent"
        WORKFLOW = "workflow", "Workflow"

    suite = models.ForeignKey(Suite, on_delete=models.CASCADE, related_name="evaluations")
    target = models.CharField(max_length=16, choices=Target.choices, default=Target.AGENT)
    agent_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    agent_version_id = models.BigIntegerField(null=True, blank=True)
    workflow_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    workflow_version_id = models.BigIntegerField(null=True, blank=True)
    version_number = models.PositiveIntegerField()
    target_name = models.CharField(max_length=80, help_text="The agent's or workflow's name.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    cases_total = models.PositiveIntegerField(default=0)
    cases_done = models.PositiveIntegerField(default=0)
    cases_passed = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    created_by_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(
                        target="agent",
                        agent_version_id__isnull=False,
                        workflow_version_id__isnull=True,
                    )
                    | models.Q(
                        target="workflow",
                        workflow_version_id__isnull=False,
                        agent_version_id__isnull=True,
                    )
                ),
                name="evals_evaluation_one_target",
            )
        ]

    def __str__(self) -> str:
        return f"{self.suite} on {self.target_name} v{self.version_number}"

    @property
    def is_workflow(self) -> bool:
        return self.target == self.Target.WORKFLOW

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.PASSED, self.Status.FAILED)

    @property
    def score(self) -> Decimal | None:
        """The share of cases that passed, once there are results."""
        if not self.cases_done:
            return None
        return Decimal(self.cases_passed) / Decimal(self.cases_done)

    @property
    def progress_percent(self) -> int:
        return int(100 * self.cases_done / self.cases_total) if self.cases_total else 100


class CaseResult(models.Model):
    """One case of an evaluation. Unique per (evaluation, case): a redelivered task finds it
    and does not answer (or pay) twice."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="results")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="results")
    output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    verdicts: Any = models.JSONField(default=list)  # [{"evaluator", "passed", "detail"}]
    passed = models.BooleanField(default=False)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    run_id = models.BigIntegerField(
        null=True, blank=True, help_text="The workflow run that answered it (workflows only)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["evaluation_id", "case__position"]
        constraints = [
            models.UniqueConstraint(fields=["evaluation", "case"], name="evals_result_once")
        ]

    def __str__(self) -> str:
        return f"{self.evaluation_id}/{self.case_id}"


class CaseRun(models.Model):
    """The workflow run started for one case of a workflow evaluation, written in the run's own
    transaction. Unique per (evaluation, case): a redelivered or parallel task never starts (or
    pays for) a second run of a case, and a task killed mid-way finds the runs it started."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="case_runs")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+")
    run_id = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["evaluation_id", "case_id"]
        constraints = [
            models.UniqueConstraint(fields=["evaluation", "case"], name="evals_case_run_once")
        ]

    def __str__(self) -> str:
        return f"{self.evaluation_id}/{self.case_id} → run {self.run_id}"


class GatePolicy(models.Model):
    """The workspace's release gates (one row)."""

    require_for_publish = models.BooleanField(
        default=False,
        help_text="An agent or workflow may be published to the marketplace only when the "
        "latest evaluation of its current version passed.",
    )
    require_for_upgrade = models.BooleanField(
        default=False,
        help_text="An install upgrades automatically only after the new version passed the "
        "evaluation suite chosen for it.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return "Evaluation gates"
