"""The safe expression evaluator and `{{ … }}` templates used by every workflow step: what a
user writes in a definition evaluates as documented, and nothing reaches Python itself."""

from __future__ import annotations

import pytest

from workflows.expressions import ExpressionError, check, evaluate, references, render

SCOPE = {
    "input": {"name": "ada", "items": [3, 1, 2], "total": 10, "ticket": "Site is DOWN"},
    "steps": {"classify": {"urgent": True, "label": "outage"}},
    "run": {"id": 7},
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("input.total * 2 + 1", 21),
        ("len(input.items) > 2 and steps.classify.urgent", True),
        ("sorted(input.items)[0]", 1),
        ("contains(input.ticket, 'down')", True),
        ("'down' in input.ticket", True),
        ("upper(input.name) if steps.classify.urgent else 'no'", "ADA"),
        ("default(input.missing, 'fallback')", "fallback"),
        ("steps['classify'].label", "outage"),
    ],
)
def test_expressions_evaluate_as_documented(expression: str, expected: object) -> None:
    assert evaluate(expression, SCOPE) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('true')", "not a known function"),
        ("input.__class__", "names starting with _ are not allowed"),
        ("open('/etc/passwd')", "not a known function"),
        ("os.getcwd()", "not a known function"),
        ("lambda: 1", "lambda"),
        ("[i for i in input.items]", "ListComp"),
        ("input.total +", "not a valid expression"),
        ("", "is empty"),
    ],
)
def test_unsafe_or_broken_expressions_are_refused_with_a_reason(
    expression: str, message: str
) -> None:
    with pytest.raises(ExpressionError) as caught:
        check(expression)
    assert message.lower() in str(caught.value).lower()


def test_attribute_access_reads_keys_never_python_attributes() -> None:
    with pytest.raises(ExpressionError):
        evaluate("input.items.append", SCOPE)


def test_a_single_part_template_keeps_the_value_type() -> None:
    assert render("{{ input.items }}", SCOPE) == [3, 1, 2]
    assert render("  {{ input.total }} ", SCOPE) == 10


def test_a_template_with_several_parts_renders_text() -> None:
    # Regression: `{{ a }}: {{ b }}` once evaluated "a }}: {{ b" as one expression.
    assert render("{{ input.name }}: {{ input.items }}", SCOPE) == "ada: [3, 1, 2]"
    assert render({"k": ["Hi {{ upper(input.name) }}!"]}, SCOPE) == {"k": ["Hi ADA!"]}


def test_references_name_the_steps_an_expression_reads() -> None:
    assert references("steps.a.text + steps['b'].text + input.x") == {"a", "b"}
