"""Testing one step: its node run once on sample input, outside any run (docs/workflows.md,
"Test one step"; decision 93).

    sample = step_test_sample(access=access, version=version, step_id="classify")
    result = step_test(access=access, version=version, step_id="classify", sample=sample.data)

A sample is `{"input": {...}, "steps": {step_id: output, ...}}`: what the node's expressions
and templates read as `input` and `steps`. A test writes no run, step run or version. Its node
runs exactly as the engine runs it (workflows/nodes.py), so its model calls go through the
gateway like a run step's: a priced ledger row per call, the agent's and workspace's budgets
and the plan's AI spend checked before each call. It is not a run, so it does not count
against the plan's runs per month. Steps that wait for something outside the step (a person,
a webhook, a child run, map items) cannot be tested alone and say so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from core.exceptions import Conflict, NotFound, ValidationFailed
from tenants.permissions import Access, Perm
from workflows import nodes, validators
from workflows.definition import Definition
from workflows.engine.plans import config_reads
from workflows.expressions import ExpressionError
from workflows.models import StepRun, StepStatus, WorkflowRun, WorkflowVersion
from workflows.runs import listing_run_check
from workflows.validators.document import Issue, step_label

logger = logging.getLogger(__name__)

# A test answers a web request: it may not hold it as long as a step may hold a worker.
MAX_TEST_SECONDS = 120

UNTESTABLE = {
    "approval": "An approval step waits for a person's decision, so it only runs inside a run: "
    "start a run and decide it on the run page.",
    "webhook_wait": "A wait-for-webhook step waits for a POST to its resume URL, so it only "
    "runs inside a run.",
    "sub_workflow": "A sub-workflow step starts a run of another workflow, so it only runs "
    "inside a run: test that workflow's steps there, or run this workflow.",
    "map": "A map step runs its body once per item inside a run: test a step of the body's "
    "type on one item instead, or run the workflow.",
}

# The checks that concern one step's own settings; the graph checks (edges, entry, what is
# upstream) are about the flow, which a test leaves out: the sample stands in for it.
_STEP_CHECKS = (
    validators.check_expressions,
    validators.check_tools,
    validators.check_agents,
    validators.check_models,
)

_SKELETON = {"string": "", "number": 0, "integer": 0, "boolean": False, "object": {}, "array": []}


@dataclass(frozen=True)
class StepTestSample:
    data: dict[str, Any]  # {"input": ..., "steps": ...}
    run_id: int | None  # the run whose outputs filled it, None for a skeleton


@dataclass(frozen=True)
class StepTestResult:
    step_id: str
    node_type: str
    succeeded: bool
    output: Any
    branch: str
    input: Any  # what the node was given (a rendered prompt, a tool's arguments)
    error: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    duration_ms: int


def _step(version: WorkflowVersion, step_id: str) -> dict[str, Any]:
    for step in version.definition.get("steps") or []:
        if isinstance(step, dict) and step.get("id") == step_id:
            return step
    raise NotFound(f"Version {version.number} has no step “{step_id}”.")


def untestable_reason(version: WorkflowVersion, step_id: str) -> str:
    """Why the step cannot be tested alone ("" when it can, or when there is no such step)."""
    try:
        step = _step(version, step_id)
    except NotFound:
        return ""
    return UNTESTABLE.get(str(step.get("type")), "")


def _reads(version: WorkflowVersion, step: dict[str, Any]) -> list[str]:
    """The steps whose outputs the sample should hold: the step's ancestors and whatever its
    settings read, in definition order."""
    if validators.check_structure(version.definition):  # saved before drafts were checked
        return []
    definition = Definition.parse(version.definition)
    wanted = definition.upstream(step["id"])
    try:
        read = config_reads(step.get("config") or {})
    except ExpressionError:  # a marker on the step; its ancestors are still a good guess
        read = set()
    wanted |= read - {"*"}
    return [s.id for s in definition.steps if s.id in wanted and s.id != step["id"]]


def step_test_sample(*, access: Access, version: WorkflowVersion, step_id: str) -> StepTestSample:
    """The sample a test of `step_id` starts from: the inputs and upstream outputs of the
    workflow's last run when there is one, else a skeleton of the workflow's inputs (defaults,
    or an empty value of each type) with the upstream steps' outputs left null."""
    access.require(Perm.WORKSPACE_VIEW)
    step = _step(version, step_id)
    reads = _reads(version, step)
    last = (
        WorkflowRun.objects.filter(workflow_id=version.workflow_id, parent_step__isnull=True)
        .order_by("-created_at", "-id")
        .only("id", "inputs")
        .first()
    )
    if last is not None:
        outputs = dict(
            StepRun.objects.filter(
                run_id=last.pk,
                parent__isnull=True,
                node_id__in=reads,
                status=StepStatus.SUCCEEDED,
            ).values_list("node_id", "output")
        )
        steps = {node_id: outputs.get(node_id) for node_id in reads}
        return StepTestSample({"input": dict(last.inputs or {}), "steps": steps}, last.pk)
    declared = version.definition.get("inputs")
    declared = declared if isinstance(declared, dict) else {}
    inputs = {
        name: spec["default"] if "default" in spec else _SKELETON.get(str(spec.get("type")), "")
        for name, spec in declared.items()
        if isinstance(spec, dict)
    }
    return StepTestSample({"input": inputs, "steps": dict.fromkeys(reads)}, None)


def _check_sample(sample: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(inputs, step outputs) of a sample; ValidationFailed naming `sample` otherwise."""
    if not isinstance(sample, dict):
        message = 'The sample must be a JSON object: {"input": {…}, "steps": {step id: output}}.'
        raise ValidationFailed(message, fields={"sample": [message]})
    problems = [
        f"“{key}” is not a sample key (use input and steps)"
        for key in sample
        if key not in ("input", "steps")
    ]
    problems += [
        f"{key} must be a JSON object"
        for key in ("input", "steps")
        if not isinstance(sample.get(key, {}), dict)
    ]
    if problems:
        raise ValidationFailed(
            "The sample is not valid: " + "; ".join(problems) + ".", fields={"sample": problems}
        )
    return dict(sample.get("input") or {}), dict(sample.get("steps") or {})


def _own(issue: Issue, label: str) -> bool:
    return issue.path == label or issue.path.startswith(f"{label}.")


def _require_testable(version: WorkflowVersion, step: dict[str, Any]) -> None:
    """Refuse a step whose kind cannot run alone, or whose own settings have problems (they
    are named as the builder marks them: `steps[1] (classify).config.prompt: is required`)."""
    node_type = str(step.get("type"))
    if node_type in UNTESTABLE:
        raise ValidationFailed(UNTESTABLE[node_type], fields={"step": [UNTESTABLE[node_type]]})
    if node_type not in nodes.NODES:
        message = f"“{node_type}” steps cannot be tested."
        raise ValidationFailed(message, fields={"step": [message]})
    document = version.definition
    issues = validators.check_schema(document)
    if validators.graph_checkable(document):
        issues += [issue for check in _STEP_CHECKS for issue in check(document)]
    label = step_label(document["steps"], document["steps"].index(step))
    own = [str(i) for i in dict.fromkeys(issues) if _own(i, label)]
    if own:
        more = f" (and {len(own) - 1} more)" if len(own) > 1 else ""
        raise ValidationFailed(
            f"Fix the step before testing it: {own[0]}{more}.", fields={"definition": own}
        )


def _joined(node_type: str, incoming: list[str], steps: Mapping[str, Any], inputs: Any) -> Any:
    """What the engine passes a join or parallel node: its predecessors' outputs."""
    if node_type == "join":
        return {i: steps.get(i) for i in incoming}
    if node_type == "parallel":
        if len(incoming) == 1:
            return steps.get(incoming[0])
        return {i: steps.get(i) for i in incoming} if incoming else inputs
    return None


def step_test(
    *, access: Access, version: WorkflowVersion, step_id: str, sample: Any
) -> StepTestResult:
    """Run `step_id` of `version` once on `sample` and report what it produced, used and cost
    (a failure of the step itself is a result, with `error`). Needs `Perm.RUN`: a test spends
    like a run. ValidationFailed names the sample's problems (`sample`), the step's own
    (`definition`) or why this kind of step cannot be tested (`step`)."""
    access.require(Perm.RUN)
    workflow = version.workflow
    if workflow.archived_at is not None:
        raise Conflict(f"“{workflow.name}” is archived; restore it before testing its steps.")
    step = _step(version, step_id)
    inputs, steps = _check_sample(sample)
    _require_testable(version, step)
    # an installed paid listing's copy is tested only with a runnable purchase, and not at all
    # when bought per run (a test is not a run: nothing would charge it)
    listing_run_check(workflow, surface="step_test")
    node_type = str(step["type"])
    scope = {
        "input": inputs,
        "steps": steps,
        "run": {"id": None, "workflow": workflow.pk, "version": version.number},
    }
    incoming = [e["from"] for e in version.definition.get("edges") or [] if e.get("to") == step_id]
    timeout = min(int(step.get("timeout_seconds") or MAX_TEST_SECONDS), MAX_TEST_SECONDS)
    spec = nodes.NodeSpec(step_id, node_type, dict(step.get("config") or {}))
    started = time.monotonic()
    spent = _run(spec, scope, _joined(node_type, incoming, steps, inputs), timeout)
    duration_ms = int((time.monotonic() - started) * 1000)
    failed = isinstance(spent, nodes.StepFailed)
    logger.info(
        "step test",
        extra={
            "workflow": workflow.pk,
            "version": version.number,
            "step": step_id,
            "succeeded": not failed,
            "cost_usd": str(spent.cost_usd),
        },
    )
    return StepTestResult(
        step_id=step_id,
        node_type=node_type,
        succeeded=not failed,
        output=spent.output if isinstance(spent, nodes.Outcome) else None,
        branch=spent.branch if isinstance(spent, nodes.Outcome) else "",
        input=spent.input,
        error=spent.message if isinstance(spent, nodes.StepFailed) else "",
        input_tokens=spent.usage.tokens_in,
        output_tokens=spent.usage.output_tokens,
        cost_usd=spent.cost_usd,
        duration_ms=duration_ms,
    )


def _run(
    spec: nodes.NodeSpec, scope: dict[str, Any], joined: Any, timeout: int
) -> nodes.Outcome | nodes.StepFailed:
    """The node's outcome, or the failure to show (with what it spent before failing)."""
    started = time.monotonic()
    try:
        with nodes.deadline(timeout):
            outcome = nodes.execute(spec, scope, joined)
        if time.monotonic() - started > timeout:  # where the deadline could not interrupt
            raise nodes.StepTimedOut(timeout)
    except nodes.StepTimedOut as exc:
        return nodes.StepFailed(str(exc))
    except nodes.StepFailed as exc:
        return exc
    except Exception as exc:
        logger.exception("step test of %s (%s) raised", spec.id, spec.type)
        return nodes.StepFailed(f"Internal error ({type(exc).__name__}); see the logs.")
    return outcome
