"""The tool-calling loop: ask the model, run the tools it calls, feed results back, repeat.

The set of tools is fixed before the first call. Tool output is untrusted data that goes back
to the model as text; nothing in it (or in the model's answer) can add a tool, so a prompt
injection in a web page or a document can at most make the model *ask* for a tool it does not
have, which is refused.

With `on_event` the loop streams: text deltas and finished tool calls of every model call, and
a `ToolStepDone` after each tool ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from agents.gateway import replay
from agents.gateway.budgets import BudgetExceeded
from agents.gateway.calls import (
    NO_CONTEXT,
    GatewayError,
    GatewayResult,
    UsageContext,
    gateway_complete,
    gateway_stream,
)
from agents.providers.base import (
    ChatRequest,
    Message,
    StopReason,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallReady,
    Usage,
)
from agents.tools.base import NO_TOOL_CONTEXT, Tool, ToolContext, ToolFailed
from agents.tools.mcp.client import PREFIX as MCP_PREFIX
from agents.tools.mcp.tool import mcp_tools
from agents.tools.registry import BUILTIN_TOOLS
from core import tracing
from core.exceptions import ValidationFailed


@dataclass(frozen=True)
class ToolStep:
    call: ToolCall
    output: str
    ok: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "tool": self.call.name,
            "arguments": self.call.arguments,
            "output": self.output,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class ToolStepDone:
    step: ToolStep


LoopEvent = TextDelta | ToolCallReady | ToolStepDone
OnEvent = Callable[[LoopEvent], None]


@dataclass
class LoopResult:
    text: str
    steps: list[ToolStep] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal = Decimal(0)
    model_calls: int = 0
    stopped_by_guardrail: bool = False
    stop_reason: StopReason | None = None  # of the last model call


def tools_by_name(names: list[str]) -> dict[str, Tool]:
    """Built-in tools by name, and `mcp__<connection>__<tool>` for a tool of one of the
    workspace's MCP server connections (as last fetched; in the current schema)."""
    remote_names = [n for n in names if n.startswith(MCP_PREFIX)]
    remote, missing = mcp_tools(remote_names) if remote_names else ({}, [])
    unknown = sorted((set(names) - set(remote_names) - set(BUILTIN_TOOLS)) | set(missing))
    if unknown:
        raise ValidationFailed(
            f"Unknown tool(s): {', '.join(unknown)}.",
            fields={
                "tools": [
                    f"Choose from: {', '.join(sorted(BUILTIN_TOOLS))}, or a tool of an MCP "
                    "server connection (mcp__<connection>__<tool>)."
                ]
            },
        )
    return {name: remote[name] if name in remote else BUILTIN_TOOLS[name] for name in names}


def _run_tool(tools: dict[str, Tool], call: ToolCall, context: ToolContext) -> ToolStep:
    tool = tools.get(call.name)
    if tool is None:
        return ToolStep(call, f"Tool '{call.name}' is not available to this agent.", ok=False)
    recorder = replay.current()
    if recorder is None:
        return _call_tool(tool, call, context)
    key = replay.tool_fingerprint(call.name, call.arguments)
    recorded = recorder.replay(replay.TOOL, key)
    if recorded is not None:  # a redelivered workflow step: the side effect already happened
        return ToolStep(call, recorded["output"], ok=recorded["ok"])
    step = _call_tool(tool, call, context)
    recorder.record(replay.TOOL, key, {"output": step.output, "ok": step.ok}, Decimal(0))
    return step


def _call_tool(tool: Tool, call: ToolCall, context: ToolContext) -> ToolStep:
    """Run the tool in a span named as the GenAI semantic conventions name it; its arguments
    and result are recorded only when OTEL_RECORD_CONTENT is on."""
    attributes = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": tool.name,
        "gen_ai.tool.call.id": call.id,
    }
    with tracing.span(f"execute_tool {tool.name}", attributes=attributes) as span:
        if span.is_recording() and tracing.record_content():
            span.set_attribute("gen_ai.tool.call.arguments", tracing.content(call.arguments))
        try:
            tool.validate(call.arguments)
            step = ToolStep(call, tool.run(call.arguments, context), ok=True)
        except ToolFailed as exc:
            tracing.failed(span, str(exc))
            return ToolStep(call, str(exc), ok=False)
        if span.is_recording() and tracing.record_content():
            span.set_attribute("gen_ai.tool.call.result", tracing.content(step.output))
        return step


def _ask(
    model: str, request: ChatRequest, context: UsageContext, on_event: OnEvent | None
) -> GatewayResult:
    if on_event is None:
        return gateway_complete(model=model, request=request, context=context)

    def forward(event: StreamEvent) -> None:
        if isinstance(event, TextDelta | ToolCallReady):
            on_event(event)

    return gateway_stream(model=model, request=request, on_event=forward, context=context)


def run_tool_loop(
    *,
    model: str,
    messages: list[Message],
    tool_names: list[str],
    system: str = "",
    max_tool_calls: int = 8,
    temperature: float | None = None,
    max_tokens: int = 1024,
    output_schema: dict[str, Any] | None = None,
    context: UsageContext = NO_CONTEXT,
    tool_context: ToolContext = NO_TOOL_CONTEXT,
    on_event: OnEvent | None = None,
) -> LoopResult:
    tools = tools_by_name(tool_names)
    specs = tuple(tool.spec() for tool in tools.values())
    conversation = list(messages)
    loop = LoopResult(text="")
    while True:
        request = ChatRequest(
            model=model,
            messages=tuple(conversation),
            system=system,
            temperature=temperature,
            max_tokens=max_tokens,
            tools=specs,
            output_schema=output_schema,
        )
        spent_so_far = replace(context, run_spent_usd=context.run_spent_usd + loop.cost_usd)
        try:
            outcome = _ask(model, request, spent_so_far, on_event)
        except (GatewayError, BudgetExceeded) as exc:  # what the turn spent stays on it
            exc.usage, exc.cost_usd = loop.usage + exc.usage, loop.cost_usd + exc.cost_usd
            raise
        loop.model_calls += 1
        loop.usage = loop.usage + outcome.result.usage
        loop.cost_usd += outcome.cost_usd
        calls = outcome.result.tool_calls
        loop.stop_reason = outcome.result.stop_reason
        if not calls:
            loop.text = outcome.result.text
            return loop
        if len(loop.steps) + len(calls) > max_tool_calls:
            loop.text = (
                f"Stopped: this agent may make at most {max_tool_calls} tool calls in one turn."
            )
            loop.stopped_by_guardrail = True
            return loop
        conversation.append(
            Message(role="assistant", content=outcome.result.text, tool_calls=calls)
        )
        for call in calls:
            step = _run_tool(tools, call, tool_context)
            loop.steps.append(step)
            if on_event is not None:
                on_event(ToolStepDone(step))
            conversation.append(Message(role="tool", content=step.output, tool_call_id=call.id))
