"""What each node type does when its step runs (docs/workflows.md, "Node types").

The engine calls `execute(node, scope, joined)` outside any transaction or row lock, inside
`agents.gateway.replay.recording(...)` and `deadline(...)`. A node returns an `Outcome` (its
output, the branch it chose, what it spent) or asks the engine to wait (approval, webhook,
sub-workflow, map items); it raises `StepFailed` for an error the user should read. Nodes never
write run or step rows: the engine does that in one transaction afterwards.
"""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from types import FrameType
from typing import Any, Literal

import jsonschema

from agents.execution import answer_with_version, schema_instruction
from agents.gateway import replay
from agents.gateway.calls import UsageContext, spent_before_failing
from agents.models import Agent
from agents.providers.base import Message, Usage
from agents.tools.base import ToolContext, ToolFailed
from agents.tools.loop import run_tool_loop
from agents.tools.registry import BUILTIN_TOOLS
from core.exceptions import ApplicationError
from core.hooks import listing_copy_check
from workflows.expressions import ExpressionError, evaluate, render
from workflows.limits import plan_limits
from workflows.models import Workflow
from workflows.runnable import inputs_check, version_require_runnable
from workflows.sandbox import CodeFailed, CodeLimits, run_code

WAIT_APPROVAL = "approval"
WAIT_WEBHOOK = "webhook"
WAIT_CHILD = "sub_workflow"
WAIT_ITEMS = "map"
DEFAULT_MAX_TOKENS = 1024


@dataclass(frozen=True)
class NodeSpec:
    """The node a step run executes: a definition step, or a map's body for one item."""

    id: str
    type: str
    config: dict[str, Any]


@dataclass(frozen=True)
class ChildRun:
    """A sub-workflow run the engine starts when the step's outcome is committed."""

    workflow_id: int
    version_id: int
    inputs: dict[str, Any]


@dataclass
class Outcome:
    output: Any = None
    branch: str = ""
    input: Any = None  # what the node was given, for the run page
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal = Decimal(0)
    wait: str = ""  # one of the WAIT_* kinds: the step waits instead of finishing
    wait_seconds: int | None = None  # webhook_wait: how long before it fails
    items: list[Any] | None = None  # map: the list to run the body over
    child: ChildRun | None = None  # sub_workflow


class StepFailed(Exception):
    """The attempt failed with a message for the user.

    `replayable`: whether the next attempt may replay this attempt's recorded calls. False
    when the failure came from what a call answered (an output that does not match its schema,
    a guardrail): asking the same question must then really ask again."""

    def __init__(
        self,
        message: str,
        *,
        replayable: bool = True,
        usage: Usage | None = None,
        cost_usd: Decimal = Decimal(0),
        input: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.replayable = replayable
        self.usage = usage or Usage()
        self.cost_usd = cost_usd
        self.input = input


class StepTimedOut(BaseException):
    """Raised inside the node when its deadline passes. A BaseException so that library code
    catching `Exception` (SDK retry loops, the tool's error handling) lets it through."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"timed out after {seconds:g} s")
        self.seconds = seconds


def deadline_enforced() -> bool:
    """SIGALRM can interrupt the node only on the main thread (Celery's prefork and solo pools
    run tasks there; a threads pool does not, and then the engine checks after the fact)."""
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise StepTimedOut in this thread when `seconds` pass (interrupting blocking I/O)."""
    if not deadline_enforced():
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise StepTimedOut(seconds)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- helpers ---------------------------------------------------------------------------------


def _render(template: Any, scope: Mapping[str, Any], where: str) -> Any:
    try:
        return render(template, scope)
    except ExpressionError as exc:
        raise StepFailed(f"{where}: {exc}", replayable=False) from exc


def _evaluate(expression: str, scope: Mapping[str, Any], where: str) -> Any:
    try:
        return evaluate(expression, scope)
    except ExpressionError as exc:
        raise StepFailed(f"{where}: {exc}", replayable=False) from exc


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, default=str)


def parse_json_answer(text: str, schema: dict[str, Any]) -> tuple[Any, str]:
    """(value, "") when `text` is JSON matching `schema`, else (None, what is wrong)."""
    candidate = text.strip()
    if candidate.startswith("```"):
        candidate = re.sub(r"^```[a-zA-Z]*\n?|```$", "", candidate).strip()
    try:
        value = json.loads(candidate)
    except json.JSONDecodeError as exc:
        return None, f"the answer is not JSON ({exc.msg} at position {exc.pos})"
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(value)
    )
    if error is not None:
        where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.path)
        return None, f"at {where}: {error.message}"
    return value, ""


@dataclass
class ModelAnswer:
    text: str
    data: Any
    usage: Usage
    cost_usd: Decimal


def ask_model(
    *,
    model: str,
    prompt: str,
    system: str = "",
    temperature: float | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    output_schema: dict[str, Any] | None = None,
) -> ModelAnswer:
    """One prompt through the gateway (no tools). With `output_schema` the answer must be JSON
    matching it, else StepFailed (not replayable: the next attempt asks again)."""
    try:
        loop = run_tool_loop(
            model=model,
            messages=[Message(role="user", content=prompt)],
            tool_names=[],
            system=system + (schema_instruction(output_schema) if output_schema else ""),
            temperature=temperature,
            max_tokens=max_tokens,
            output_schema=output_schema,
            context=UsageContext(),
        )
    except ApplicationError as exc:  # GatewayError, UnknownModel, budget refusals
        usage, cost = spent_before_failing(exc)  # a failed call's attempts may have cost
        raise StepFailed(exc.message, usage=usage, cost_usd=cost) from exc
    data = None
    if output_schema:
        data, problem = parse_json_answer(loop.text, output_schema)
        if problem:
            raise StepFailed(
                f"The answer does not match the output schema: {problem}.",
                replayable=False,
                usage=loop.usage,
                cost_usd=loop.cost_usd,
            )
    return ModelAnswer(text=loop.text, data=data, usage=loop.usage, cost_usd=loop.cost_usd)


def call_tool(name: str, arguments: dict[str, Any]) -> str:
    """A built-in tool, recorded for replay like the tool loop's calls (a redelivered step
    never repeats a side effect). A refusal or error is StepFailed (and not recorded)."""
    tool = BUILTIN_TOOLS.get(name)
    if tool is None:
        raise StepFailed(f"There is no built-in tool '{name}'.", replayable=False)
    recorder = replay.current()
    key = replay.tool_fingerprint(name, arguments)
    if recorder is not None:
        recorded = recorder.replay(replay.TOOL, key)
        if recorded is not None and recorded.get("ok", True):
            return str(recorded["output"])
    try:
        tool.validate(arguments)
        output = tool.run(arguments, ToolContext())
    except ToolFailed as exc:
        raise StepFailed(f"{name}: {exc}") from exc
    if recorder is not None:
        recorder.record(replay.TOOL, key, {"output": output, "ok": True}, Decimal(0))
    return output


# --- node types ------------------------------------------------------------------------------


def _transform(node: NodeSpec, scope: Mapping[str, Any], joined: Any) -> Outcome:
    return Outcome(output=_render(node.config.get("value"), scope, "config.value"))


def _condition(node: NodeSpec, scope: Mapping[str, Any], joined: Any) -> Outcome:
    result = bool(_evaluate(node.config["expression"], scope, "config.expression"))
    return Outcome(output={"result": result}, branch="true" if result else "false")


def _router(node: NodeSpec, scope: Mapping[str, Any], joined: Any) -> Outcome:
    routes = [r["name"] for r in node.config.get("routes", [])]
    if node.config.get("mode") == "llm":
        return _route_by_model(node, scope, routes)
    chosen = _evaluate(node.config.get("expression", ""), scope, "config.expression")
    if chosen not in routes:
        raise StepFailed(
            f"config.expression gave {chosen!r}, which is not a route ({', '.join(routes)}).",
            replayable=False,
        )
    return Outcome(output={"route": chosen}, branch=str(chosen))


def _route_by_model(node: NodeSpec, scope: Mapping[str, Any], routes: list[str]) -> Outcome:
    prompt = _text(_render(node.config.get("prompt", ""), scope, "config.prompt"))
    lines = [
        f"- {r['name']}: {r.get('description', '')}".rstrip(": ")
        for r in node.config.get("routes", [])
    ]
    system = (
        "You route a request to exactly one of these routes:\n"
        + "\n".join(lines)
        + "\nAnswer with the route's name."
    )
    schema = {
        "type": "object",
        "properties": {"route": {"enum": routes}},
        "required": ["route"],
        "additionalProperties": False,
    }
    answer = ask_model(
        model=node.config.get("model") or "default",
        prompt=prompt,
        system=system,
        max_tokens=64,
        output_schema=schema,
    )
    chosen = answer.data["route"]
    return Outcome(
        output={"route": chosen},
        branch=chosen,
        input={"prompt": prompt},
        usage=answer.usage,
        cost_usd=answer.cost_usd,
    )


def _parallel(node: NodeSpec, scope: Mapping[str, Any], joined: Any) -> Outcome:
    return Outcome(output=joined)


def _join(node: NodeSpec, scope: Mapping[str, Any], joined: Any) -> Outcome:
    return Outcome(output=joined)


def _llm(node: NodeSpec, scope: Mapping[str, Any], joined: Any) -> Outcome:
    config = node.config
    prompt = _text(_render(config.get("prompt", ""), scope, "config.prompt"))
    system = _text(_render(config.get("system", ""), scope, "config.system"))
    answer = ask_model(
        model=config["model"],
        prompt=prompt,
        system=system,
        temperature=config.get("temperature"),
        max_tokens=config.get("max_tokens", DEFAULT_MAX_TOKENS),
        output_schema=config.get("output_schema"),
    )
    return Outcome(
        output={"text": answer.text, "data": answer.data},
        input={"system": system, "prompt": prompt} if system else {"prompt": prompt},
        usage=answer.usage,
        cost_usd=answer.cost_usd,
    )


def _listing_check(
    listing_version_id: int | None,
    kind: Literal["agent", "workflow"],
    scope: Mapping[str, Any],
    *,
    input: Any = None,
) -> None:
    """A step that makes a listing's copy answer (an agent step, a sub-workflow) asks the
    marketplace first (core.hooks.run_starting), unless the copy came with this workflow's own
    listing (installing a workflow listing copies its step agents with the workflow's listing
    version: the run itself was asked, and is what a per-run purchase charges). An agent step
    is not a run (surface "step": a per-run purchase's copy is refused, nothing charges it); a
    sub-workflow's child is a run of its own, charged like one. A refusal fails the step with
    the marketplace's message (402 `purchase_required` in the run's error)."""
    if listing_version_id is None:
        return
    run = scope.get("run") or {}
    own = (
        Workflow.objects.filter(pk=run.get("workflow") or 0)
        .values_list("listing_version_id", flat=True)
        .first()
    )
    if own == listing_version_id:
        return
    try:
        listing_copy_check(kind, listing_version_id, surface="step" if kind == "agent" else "run")
    except ApplicationError as exc:
        raise StepFailed(exc.message, input=input) from exc


def _agent(node: NodeSpec, scope: Mapping[str, Any], joined: Any) -> Outcome:
    # By id only: a rename, or another agent taking the name, never changes what runs
    # (workflows/agent_refs.py). Saving binds a name to its id; workflows.0003 bound old ones.
    agent_id = node.config.get("agent_id")
    label = node.config.get("agent") or f"#{agent_id}"
    prompt = _text(_render(node.config.get("prompt", ""), scope, "config.prompt"))
    if not isinstance(agent_id, int) or isinstance(agent_id, bool):
        raise StepFailed(
            f"The step names the agent '{label}' but does not hold its id: choose the agent "
            "in the step again and save the workflow."
        )
    agent = Agent.objects.select_related("current_version").filter(pk=agent_id).first()
    if agent is None:
        raise StepFailed(f"The agent '{label}' (id {agent_id}) no longer exists in this workspace.")
    if agent.archived_at is not None:
        raise StepFailed(f"The agent '{agent.name}' is archived.")
    if agent.current_version is None:
        raise StepFailed(f"The agent '{agent.name}' has no saved version yet.")
    _listing_check(agent.listing_version_id, "agent", scope, input={"prompt": prompt})
    name = agent.name
    version = agent.current_version
    try:
        answer = answer_with_version(
            version,
            messages=[Message(role="user", content=prompt)],
            context=UsageContext(agent_id=agent.pk, run_cap_usd=version.max_cost_per_run_usd),
        )
    except ApplicationError as exc:
        usage, cost = spent_before_failing(exc)
        raise StepFailed(exc.message, usage=usage, cost_usd=cost, input={"prompt": prompt}) from exc
    if not answer.ok:
        raise StepFailed(
            answer.error or "The agent did not answer.",
            replayable=False,
            usage=answer.usage,
            cost_usd=answer.cost_usd,
            input={"prompt": prompt},
        )
    return Outcome(
        output={
            "text": answer.text,
            "data": answer.data,
            "agent_version": version.number,
            "tool_steps": answer.tool_steps,
        },
        input={"agent": name, "prompt": prompt},
        usage=answer.usage,
        cost_usd=answer.cost_usd,
    )


def _tool(node: NodeSpec, scope: Mapping[str, Any], joined: Any) -> Outcome:
    arguments = _render(node.config.get("arguments") or {}, scope, "config.arguments")
    if not isinstance(arguments, dict):
        raise StepFailed("config.arguments must give an object.", replayable=False)
    result = call_tool(node.config["tool"], arguments)
    return Outcome(output={"result": result}, input=arguments)


def _code(node: NodeSpec, scope: Mapping[str, Any], joined: Any) -> Outcome:
    """`main(inputs)` run in a sandboxed child process (workflows/sandbox, docs/sandbox.md)."""
    inputs = _render(node.config.get("inputs") or {}, scope, "config.inputs")
    if not isinstance(inputs, dict):
        raise StepFailed("config.inputs must give an object.", replayable=False)
    try:
        result = run_code(node.config["code"], inputs, limits=CodeLimits.from_settings())
    except CodeFailed as exc:
        raise StepFailed(f"Code step '{node.id}': {exc.message}", input=inputs) from exc
    return Outcome(output=result, input=inputs)


def _approval(node: NodeSpec, scope: Mapping[str, Any], joined: Any) -> Outcome:
    message = _text(_render(node.config.get("message", ""), scope, "config.message"))
    return Outcome(
        wait=WAIT_APPROVAL,
        input={"message": message, "approvers": node.config.get("approvers", "members")},
    )


def _webhook_wait(node: NodeSpec, scope: Mapping[str, Any], joined: Any) -> Outcome:
    return Outcome(wait=WAIT_WEBHOOK, wait_seconds=node.config.get("timeout_seconds"))


def _sub_workflow(node: NodeSpec, scope: Mapping[str, Any], joined: Any) -> Outcome:
    name = node.config["workflow"]
    workflow = (
        Workflow.objects.filter(name=name, archived_at__isnull=True)
        .select_related("active_version")
        .order_by("pk")
        .first()
    )
    if workflow is None:
        raise StepFailed(f"There is no active workflow named '{name}' in this workspace.")
    number = node.config.get("version")
    version = workflow.versions.filter(number=number).first() if number else workflow.active_version
    if version is None:
        which = f"version {number}" if number else "a published version"
        raise StepFailed(f"The workflow '{name}' has no {which}.")
    try:  # a pinned version may be a draft saved incomplete
        version_require_runnable(workflow=workflow, version=version)
    except ApplicationError as exc:
        raise StepFailed(f"The workflow '{name}': {exc.message}") from exc
    _listing_check(workflow.listing_version_id, "workflow", scope)
    inputs = _render(node.config.get("inputs") or {}, scope, "config.inputs")
    try:
        checked = inputs_check(version.definition, inputs)
    except ApplicationError as exc:
        problems = "; ".join(m for ms in exc.fields.values() for m in ms) or exc.message
        raise StepFailed(f"config.inputs: {problems}", replayable=False) from exc
    return Outcome(
        wait=WAIT_CHILD,
        input=checked,
        child=ChildRun(workflow_id=workflow.pk, version_id=version.pk, inputs=checked),
    )


def _map(node: NodeSpec, scope: Mapping[str, Any], joined: Any) -> Outcome:
    items = _evaluate(node.config["items"], scope, "config.items")
    if not isinstance(items, list):
        raise StepFailed(
            f"config.items gave a {type(items).__name__}, not a list.", replayable=False
        )
    limit = plan_limits().max_map_items
    if len(items) > limit:
        raise StepFailed(
            f"config.items gave {len(items)} items; this workspace's plan allows {limit}.",
            replayable=False,
        )
    return Outcome(wait=WAIT_ITEMS, items=items, input={"items": len(items)})


NODES = {
    "transform": _transform,
    "code": _code,
    "condition": _condition,
    "router": _router,
    "parallel": _parallel,
    "join": _join,
    "llm": _llm,
    "agent": _agent,
    "tool": _tool,
    "approval": _approval,
    "webhook_wait": _webhook_wait,
    "sub_workflow": _sub_workflow,
    "map": _map,
}


def execute(node: NodeSpec, scope: Mapping[str, Any], joined: Any = None) -> Outcome:
    """Run one node. `joined`: the outputs of the predecessors it was started from
    ({step_id: output}), which `parallel` and `join` pass on."""
    handler = NODES.get(node.type)
    if handler is None:
        raise StepFailed(f"Unknown node type '{node.type}'.", replayable=False)
    return handler(node, scope, joined)
