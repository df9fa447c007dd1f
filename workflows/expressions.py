"""Safe expressions and `{{ … }}` templates for workflow definitions (docs/workflows.md).

    check("steps.classify.data.urgent and len(input.items) > 2")    # raises ExpressionError
    evaluate("input.total * 2", scope)                              # no eval/exec: an AST walk
    render("Hello {{ upper(input.name) }}", scope)
    references("steps.a.text + steps.b.text")                        # {"a", "b"}

Only whitelisted AST nodes and functions are allowed; attribute access reads dict keys (never
Python attributes); sizes are bounded so an expression cannot build huge values.
"""

from __future__ import annotations

import ast
import json
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any, cast

MAX_EXPRESSION_LENGTH = 2000
MAX_SEQUENCE = 100_000
MAX_STRING = 1_000_000
ROOT_NAMES = frozenset({"input", "steps", "item", "index", "run"})
TEMPLATE_PART = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


class ExpressionError(ValueError):
    """A problem in an expression; the message says what and where, for the user."""


_MISSING = object()


def _default(value: Any, fallback: Any) -> Any:
    return fallback if value is None or value == "" else value


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if v is not None and v != ""), None)


def _join(items: Any, separator: str = ", ") -> str:
    return str(separator).join(_text(i) for i in items)


def _contains(container: Any, value: Any) -> bool:
    if container is None:
        return False
    if isinstance(container, str):
        return str(value).lower() in container.lower()
    return value in container


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
    "strip": lambda s: str(s).strip(),
    "str": lambda v: _text(v),
    "int": int,
    "float": float,
    "bool": bool,
    "round": round,
    "min": min,
    "max": max,
    "sum": sum,
    "abs": abs,
    "sorted": sorted,
    "join": _join,
    "split": lambda s, sep=None: str(s).split(sep),
    "contains": _contains,
    "startswith": lambda s, p: str(s).startswith(str(p)),
    "endswith": lambda s, p: str(s).endswith(str(p)),
    "replace": lambda s, old, new: str(s).replace(str(old), str(new)),
    "keys": lambda d: list(d.keys()),
    "values": lambda d: list(d.values()),
    "json": lambda v: json.dumps(v, ensure_ascii=False, default=str),
    "default": _default,
    "coalesce": _coalesce,
}

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: _contains(b, a),
    ast.NotIn: lambda a, b: not _contains(b, a),
    ast.Is: lambda a, b: a is b,  # only `is None` / `is not None` get past the checker
    ast.IsNot: lambda a, b: a is not b,
}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


@lru_cache(maxsize=4096)
def _compile(expression: str) -> ast.expr:
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"is longer than {MAX_EXPRESSION_LENGTH} characters")
    if not expression.strip():
        raise ExpressionError("is empty")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"is not a valid expression ({exc.msg})") from exc
    for node in ast.walk(tree):
        _check_node(node)
    return tree.body


_ALLOWED = (
    ast.Expression,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Attribute,
    ast.Subscript,
    ast.Slice,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.BinOp,
    ast.Compare,
    ast.IfExp,
    ast.Call,
    *_BINARY,
    *_COMPARE,
)


def _check_node(node: ast.AST) -> None:
    if not isinstance(node, _ALLOWED):
        raise ExpressionError(f"uses {type(node).__name__}, which is not allowed")
    if isinstance(node, ast.Name) and node.id not in ROOT_NAMES and node.id not in FUNCTIONS:
        known = ", ".join(sorted(ROOT_NAMES))
        raise ExpressionError(f"uses unknown name {node.id!r} (names are {known})")
    if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
        raise ExpressionError(f"reads {node.attr!r}; names starting with _ are not allowed")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            allowed = ", ".join(sorted(FUNCTIONS))
            raise ExpressionError(f"calls something that is not a known function ({allowed})")
        if node.keywords:
            raise ExpressionError(f"passes keyword arguments to {node.func.id}()")
    if isinstance(node, ast.Compare):
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.Is | ast.IsNot) and not (
                isinstance(right, ast.Constant) and right.value is None
            ):
                raise ExpressionError("uses `is` with something other than None")


def check(expression: str) -> None:
    """Raise ExpressionError if the expression does not parse or uses what is not allowed."""
    _compile(expression)


def evaluate(expression: str, scope: Mapping[str, Any]) -> Any:
    try:
        return _eval(_compile(expression), scope)
    except ExpressionError:
        raise
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, KeyError, IndexError) as exc:
        raise ExpressionError(f"failed: {exc}") from exc


def _eval(node: ast.expr, scope: Mapping[str, Any]) -> Any:
    evaluator = _EVALUATORS.get(type(node))
    if evaluator is None:
        raise ExpressionError(f"uses {type(node).__name__}, which is not allowed")
    return evaluator(node, scope)


def _eval_name(node: ast.Name, scope: Mapping[str, Any]) -> Any:
    if node.id in scope:
        return scope[node.id]
    if node.id in ROOT_NAMES:
        return None
    raise ExpressionError(f"{node.id}() is a function; call it")


def _eval_subscript(node: ast.Subscript, scope: Mapping[str, Any]) -> Any:
    container = _eval(node.value, scope)
    if isinstance(node.slice, ast.Slice):
        parts = [
            None if p is None else _eval(p, scope)
            for p in (node.slice.lower, node.slice.upper, node.slice.step)
        ]
        return container[slice(*parts)] if container is not None else None
    return _lookup(container, _eval(node.slice, scope))


def _eval_dict(node: ast.Dict, scope: Mapping[str, Any]) -> Any:
    return {
        _eval(k, scope) if k is not None else None: _eval(v, scope)
        for k, v in zip(node.keys, node.values, strict=True)
    }


def _eval_bool(node: ast.BoolOp, scope: Mapping[str, Any]) -> Any:
    value: Any = None
    for operand in node.values:
        value = _eval(operand, scope)
        if isinstance(node.op, ast.And) and not value:
            return value
        if isinstance(node.op, ast.Or) and value:
            return value
    return value


def _eval_unary(node: ast.UnaryOp, scope: Mapping[str, Any]) -> Any:
    operand = _eval(node.operand, scope)
    if isinstance(node.op, ast.Not):
        return not operand
    return -operand if isinstance(node.op, ast.USub) else +operand


def _eval_binary(node: ast.BinOp, scope: Mapping[str, Any]) -> Any:
    left, right = _eval(node.left, scope), _eval(node.right, scope)
    if isinstance(node.op, ast.Mult) and _repeat_too_long(left, right):
        raise ExpressionError(f"repeats a value more than {MAX_SEQUENCE} times")
    return _bounded(_BINARY[type(node.op)](left, right))


def _eval_compare(node: ast.Compare, scope: Mapping[str, Any]) -> Any:
    left = _eval(node.left, scope)
    for op, right_node in zip(node.ops, node.comparators, strict=True):
        right = _eval(right_node, scope)
        if not _COMPARE[type(op)](left, right):
            return False
        left = right
    return True


def _eval_call(node: ast.Call, scope: Mapping[str, Any]) -> Any:
    func = cast(ast.Name, node.func)  # the checker allows calls of names only
    args = [_eval(a, scope) for a in node.args]
    return _bounded(FUNCTIONS[func.id](*args))


# One evaluator per node type the checker allows; anything else is refused.
_EVALUATORS: dict[type[ast.expr], Callable[[Any, Mapping[str, Any]], Any]] = {
    ast.Constant: lambda node, scope: node.value,
    ast.Name: _eval_name,
    ast.Attribute: lambda node, scope: _lookup(_eval(node.value, scope), node.attr),
    ast.Subscript: _eval_subscript,
    ast.List: lambda node, scope: [_eval(e, scope) for e in node.elts],
    ast.Tuple: lambda node, scope: [_eval(e, scope) for e in node.elts],
    ast.Dict: _eval_dict,
    ast.BoolOp: _eval_bool,
    ast.UnaryOp: _eval_unary,
    ast.BinOp: _eval_binary,
    ast.Compare: _eval_compare,
    ast.IfExp: lambda node, scope: _eval(
        node.body if _eval(node.test, scope) else node.orelse, scope
    ),
    ast.Call: _eval_call,
}


def _lookup(container: Any, key: Any) -> Any:
    """Missing keys and indexes read as None, so `default(steps.x.y, 0)` works."""
    if container is None:
        return None
    if isinstance(container, Mapping):
        return container.get(key)
    if isinstance(container, list | str) and isinstance(key, int) and not isinstance(key, bool):
        return container[key] if -len(container) <= key < len(container) else None
    raise ExpressionError(f"cannot read {key!r} from a {type(container).__name__}")


def _repeat_too_long(left: Any, right: Any) -> bool:
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | list) and isinstance(count, int) and count * len(seq) > MAX_STRING:
            return True
    return False


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise ExpressionError(f"builds a string longer than {MAX_STRING} characters")
    if isinstance(value, list | dict) and len(value) > MAX_SEQUENCE:
        raise ExpressionError(f"builds a collection longer than {MAX_SEQUENCE} items")
    return value


# --- templates -----------------------------------------------------------------------------


def template_expressions(template: str) -> list[str]:
    return [m.group(1).strip() for m in TEMPLATE_PART.finditer(template)]


def check_template(template: str) -> None:
    for expression in template_expressions(template):
        try:
            check(expression)
        except ExpressionError as exc:
            raise ExpressionError(f"{{{{ {expression} }}}} {exc}") from exc


def render(template: Any, scope: Mapping[str, Any]) -> Any:
    """Render a template string, or every string inside a list/dict of templates. A string that
    is exactly one `{{ … }}` keeps the value's type."""
    if isinstance(template, dict):
        return {k: render(v, scope) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, scope) for v in template]
    if not isinstance(template, str) or "{{" not in template:
        return template
    parts = TEMPLATE_PART.findall(template)
    # `{{ a }}: {{ b }}` also "fullmatches" a non-greedy part spanning both; only a string that
    # is exactly one part keeps the value's type.
    if len(parts) == 1 and TEMPLATE_PART.fullmatch(template.strip()):
        return evaluate(parts[0].strip(), scope)
    return TEMPLATE_PART.sub(lambda m: _text(evaluate(m.group(1).strip(), scope)), template)


def iter_template_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_template_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from iter_template_strings(v)


# --- references (for the validators) -------------------------------------------------------


def references(expression: str) -> set[str]:
    """Step ids read as `steps.X` or `steps["X"]`; `steps` used any other way reads as `*`."""
    found: set[str] = set()
    tree = _compile(expression)
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "steps":
            parent = parents.get(id(node))
            if isinstance(parent, ast.Attribute):
                found.add(parent.attr)
            elif (
                isinstance(parent, ast.Subscript)
                and isinstance(parent.slice, ast.Constant)
                and isinstance(parent.slice.value, str)
            ):
                found.add(parent.slice.value)
            else:
                found.add("*")
    return found


def template_references(value: Any) -> set[str]:
    found: set[str] = set()
    for text in iter_template_strings(value):
        for expression in template_expressions(text):
            found |= references(expression)
    return found
