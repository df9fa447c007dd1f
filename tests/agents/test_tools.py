from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from agents.providers.base import Message, ToolCall
from agents.tools.base import NO_TOOL_CONTEXT, ToolFailed
from agents.tools.calculator import Calculator, evaluate
from agents.tools.clock import CurrentTime
from agents.tools.loop import _run_tool, run_tool_loop, tools_by_name
from core.exceptions import ValidationFailed
from tenants.models import Workspace


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 2", 4),
        ("12 * (3 + 4)", 84),
        ("7 / 2", 3.5),
        ("2 ^ 10", 1024),
        ("-3 ** 2", -9),
        ("sqrt(16) + abs(-2)", 6.0),
        ("max(1, 5, 3)", 5),
        ("10 // 3 + 10 % 3", 4),
    ],
)
def test_calculator_does_arithmetic(expression: str, expected: float) -> None:
    assert evaluate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('id')", "allowed"),
        ("().__class__", "allowed"),
        ("open('/etc/passwd')", "allowed"),
        ("9 ** 9 ** 9", "Exponents above"),
        ("1 / 0", "Division by zero"),
        ("2 +", "Not an arithmetic expression"),
        ("1" * 600, "longer than"),
        ("sqrt(-1)", "sqrt()"),
        ("10.0 ** 200", "too large"),
    ],
)
def test_calculator_refuses_what_is_not_plain_arithmetic(expression: str, message: str) -> None:
    with pytest.raises(ToolFailed, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate(expression)


def test_tool_arguments_are_validated_against_the_schema() -> None:
    calculator = Calculator()
    with pytest.raises(ToolFailed, match="expression"):
        calculator.validate({})
    with pytest.raises(ToolFailed, match="Additional properties"):
        calculator.validate({"expression": "1+1", "shell": "rm -rf /"})
    assert calculator.run({"expression": "6*7"}) == "42"


def test_current_time_knows_time_zones_and_names_a_bad_one() -> None:
    assert "Europe/Paris" in CurrentTime().run({"timezone": "Europe/Paris"})
    with pytest.raises(ToolFailed, match="Unknown time zone 'Mars/Olympus'"):
        CurrentTime().run({"timezone": "Mars/Olympus"})


def test_a_tool_the_agent_was_not_given_is_refused_not_run() -> None:
    tools = tools_by_name(["current_time"])
    step = _run_tool(
        tools, ToolCall(id="c1", name="calculator", arguments={"expression": "1"}), NO_TOOL_CONTEXT
    )
    assert step.ok is False
    assert "not available" in step.output


def test_unknown_tool_names_are_a_field_error() -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        tools_by_name(["calculator", "shell"])
    assert "shell" in excinfo.value.message
    assert "tools" in excinfo.value.fields


@pytest.mark.django_db
def test_loop_runs_the_calculator_and_answers_with_its_result(workspace_a: Workspace) -> None:
    with schema_context(workspace_a.schema_name):
        result = run_tool_loop(
            model="offline:demo",
            messages=[Message(role="user", content="What is 12 * (3 + 4)?")],
            tool_names=["calculator"],
        )
    assert [s.output for s in result.steps] == ["84"]
    assert "84" in result.text
    assert result.model_calls == 2
    assert result.usage.input_tokens > 0


@pytest.mark.django_db
def test_loop_without_tools_never_runs_one(workspace_a: Workspace) -> None:
    with schema_context(workspace_a.schema_name):
        result = run_tool_loop(
            model="offline:demo",
            tool_names=[],
            messages=[Message(role="user", content="What is 2 + 2?")],
        )
    assert result.steps == []
    assert result.model_calls == 1


@pytest.mark.django_db
def test_tool_call_guardrail_stops_the_loop(workspace_a: Workspace) -> None:
    with schema_context(workspace_a.schema_name):
        result = run_tool_loop(
            model="offline:demo",
            tool_names=["calculator"],
            max_tool_calls=0,
            messages=[Message(role="user", content="What is 5 * 5?")],
        )
    assert result.stopped_by_guardrail
    assert "at most 0 tool calls" in result.text
    assert result.steps == []
