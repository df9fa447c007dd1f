"""Arithmetic without eval: the expression is parsed with `ast` and only numbers, arithmetic
operators and a few math functions are evaluated, with limits on size."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from agents.tools.base import NO_TOOL_CONTEXT, Tool, ToolContext, ToolFailed

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
MAX_LENGTH = 500
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e100


def evaluate(expression: str) -> float | int:
    if len(expression) > MAX_LENGTH:
        raise ToolFailed(f"The expression is longer than {MAX_LENGTH} characters.")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise ToolFailed(f"Not an arithmetic expression: {expression!r}.") from exc
    value: float | int = _eval(tree.body)
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolFailed("The result is not a finite number.")
    return value


def _eval(node: ast.AST) -> Any:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolFailed(f"Exponents above {MAX_EXPONENT} are not allowed.")
        try:
            result = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError as exc:
            raise ToolFailed("Division by zero.") from exc
        except (OverflowError, ValueError) as exc:
            raise ToolFailed(f"Cannot compute that: {exc}.") from exc
        if isinstance(result, complex) or abs(result) > MAX_MAGNITUDE:
            raise ToolFailed("The result is too large or not a real number.")
        return result
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
        and len(node.args) <= 10
    ):
        try:
            return _FUNCTIONS[node.func.id](*(_eval(a) for a in node.args))
        except (ValueError, TypeError, OverflowError) as exc:
            raise ToolFailed(f"{node.func.id}(): {exc}.") from exc
    raise ToolFailed(
        f"Only numbers, + - * / // % ^, parentheses, pi, e and "
        f"{', '.join(sorted(_FUNCTIONS))} are allowed (found {type(node).__name__})."
    )


class Calculator(Tool):
    name = "calculator"
    description = "Evaluate an arithmetic expression exactly, e.g. '(12.5 * 4) / 3' or 'sqrt(2)'."
    parameters = {
        "type": "object",
        "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH}},
        "required": ["expression"],
        "additionalProperties": False,
    }

    def run(self, arguments: dict[str, Any], context: ToolContext = NO_TOOL_CONTEXT) -> str:
        value = evaluate(arguments["expression"])
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            value = int(value)
        return str(value)
