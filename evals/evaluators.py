"""Evaluators: each judges one case's answer and returns a `Verdict`.

A suite stores its evaluators as a list of specs, `{"kind": ..., **options}`:

- `exact`: the answer equals the case's `expected` (whitespace at the ends ignored;
  `"ignore_case": true` optional).
- `regex`: the answer matches `pattern` (Python syntax, searched anywhere).
- `json_schema`: the answer is JSON and matches `schema`.
- `max_cost`: the case cost at most `usd`.
- `max_latency`: the case answered within `ms` milliseconds.
- `judge`: an LLM (`model`, through the gateway) grades the answer against `rubric`. On the
  offline model (no network, no judgement) the verdict is deterministic: every phrase the
  rubric puts in double quotes must appear in the answer (case-insensitive), and with no
  quoted phrase a non-empty answer passes (docs/decisions.md, "Offline judge").

`validated_specs` checks specs once, when a suite is saved, naming the evaluator and field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import jsonschema

from agents.gateway.calls import UsageContext, gateway_complete
from agents.providers.base import ChatRequest, Message
from core.exceptions import ApplicationError, ValidationFailed

KINDS = ("exact", "regex", "json_schema", "max_cost", "max_latency", "judge")
JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"verdict": {"enum": ["fail", "pass"]}, "reason": {"type": "string"}},
    "required": ["verdict", "reason"],
}
JUDGE_SYSTEM = (
    "You grade an AI assistant's answer against a rubric. Reply with JSON only: "
    '{"verdict": "pass" or "fail", "reason": one sentence}.'
)
_QUOTED = re.compile(r"\"([^\"]+)\"|“([^”]+)”")


@dataclass(frozen=True)
class Answer:
    """What a case produced, as the evaluators see it."""

    input: str
    expected: str
    output: str
    cost_usd: Decimal
    latency_ms: int
    agent_id: int | None = None


@dataclass(frozen=True)
class Verdict:
    evaluator: str
    passed: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"evaluator": self.evaluator, "passed": self.passed, "detail": self.detail}


def label(spec: dict[str, Any]) -> str:
    kind = spec["kind"]
    if kind == "regex":
        return f"regex /{spec['pattern']}/"
    if kind == "max_cost":
        return f"cost ≤ ${spec['usd']}"
    if kind == "max_latency":
        return f"latency ≤ {spec['ms']} ms"
    if kind == "judge":
        return f"judge ({spec['model']})"
    return {"exact": "exact match", "json_schema": "JSON schema"}[kind]


def _exact(spec: dict[str, Any], answer: Answer) -> Verdict:
    got, want = answer.output.strip(), answer.expected.strip()
    if spec.get("ignore_case"):
        got, want = got.casefold(), want.casefold()
    if got == want:
        return Verdict(label(spec), True, "The answer equals the expected text.")
    return Verdict(label(spec), False, f"Expected {answer.expected.strip()[:200]!r}.")


def _regex(spec: dict[str, Any], answer: Answer) -> Verdict:
    if re.search(spec["pattern"], answer.output):
        return Verdict(label(spec), True, "The pattern matches.")
    return Verdict(label(spec), False, "The pattern does not match the answer.")


def _json_schema(spec: dict[str, Any], answer: Answer) -> Verdict:
    try:
        value = json.loads(answer.output)
    except json.JSONDecodeError as exc:
        return Verdict(label(spec), False, f"Not JSON: {exc.msg} at position {exc.pos}.")
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(spec["schema"]).iter_errors(value)
    )
    if error is None:
        return Verdict(label(spec), True, "Valid against the schema.")
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return Verdict(label(spec), False, f"At {where}: {error.message[:200]}")


def _max_cost(spec: dict[str, Any], answer: Answer) -> Verdict:
    limit = Decimal(str(spec["usd"]))
    passed = answer.cost_usd <= limit
    return Verdict(label(spec), passed, f"Cost ${answer.cost_usd:.6f}.")


def _max_latency(spec: dict[str, Any], answer: Answer) -> Verdict:
    passed = answer.latency_ms <= int(spec["ms"])
    return Verdict(label(spec), passed, f"Answered in {answer.latency_ms} ms.")


def offline_verdict(rubric: str, output: str) -> tuple[bool, str]:
    """The deterministic verdict used when the judge model is the offline one."""
    phrases = [a or b for a, b in _QUOTED.findall(rubric)]
    if not phrases:
        return bool(output.strip()), "Offline judge: a non-empty answer passes."
    missing = [p for p in phrases if p.casefold() not in output.casefold()]
    if missing:
        return False, f"Offline judge: the answer lacks {', '.join(repr(p) for p in missing)}."
    return True, "Offline judge: every quoted phrase of the rubric is in the answer."


def _judge(spec: dict[str, Any], answer: Answer) -> Verdict:
    prompt = (
        f"Rubric:\n{spec['rubric']}\n\nQuestion:\n{answer.input}\n\n"
        + (f"Reference answer:\n{answer.expected}\n\n" if answer.expected else "")
        + f"Answer to grade:\n{answer.output}"
    )
    request = ChatRequest(
        model=spec["model"],
        system=JUDGE_SYSTEM,
        messages=(Message(role="user", content=prompt),),
        max_tokens=300,
        temperature=0,
        output_schema=JUDGE_SCHEMA,
    )
    try:
        outcome = gateway_complete(
            model=spec["model"], request=request, context=UsageContext(agent_id=answer.agent_id)
        )
    except ApplicationError as exc:
        return Verdict(label(spec), False, f"The judge could not answer: {exc}")
    if outcome.target.kind == "offline":
        passed, reason = offline_verdict(spec["rubric"], answer.output)
        return Verdict(label(spec), passed, reason)
    text = outcome.result.text.strip()
    if text.startswith("```"):
        text = re.sub(r"^```[a-zA-Z]*\n?|```$", "", text).strip()
    try:
        data = json.loads(text)
        verdict, reason = str(data["verdict"]).lower(), str(data.get("reason", ""))
    except (json.JSONDecodeError, KeyError, TypeError):
        return Verdict(label(spec), False, f"The judge's reply was not a verdict: {text[:120]!r}")
    return Verdict(label(spec), verdict == "pass", reason[:300] or verdict)


_EVALUATE: dict[str, Callable[[dict[str, Any], Answer], Verdict]] = {
    "exact": _exact,
    "regex": _regex,
    "json_schema": _json_schema,
    "max_cost": _max_cost,
    "max_latency": _max_latency,
    "judge": _judge,
}


def evaluate(spec: dict[str, Any], answer: Answer) -> Verdict:
    return _EVALUATE[spec["kind"]](spec, answer)


def _fail(index: int, field: str, problem: str) -> ValidationFailed:
    return ValidationFailed(
        f"Evaluator {index + 1}: {problem}", fields={f"evaluators.{index}.{field}": [problem]}
    )


def _spec_exact(i: int, spec: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "exact", "ignore_case": bool(spec.get("ignore_case"))}


def _spec_regex(i: int, spec: dict[str, Any]) -> dict[str, Any]:
    pattern = spec.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise _fail(i, "pattern", "pattern is required.")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise _fail(i, "pattern", f"not a valid regular expression ({exc}).") from exc
    return {"kind": "regex", "pattern": pattern}


def _spec_json_schema(i: int, spec: dict[str, Any]) -> dict[str, Any]:
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise _fail(i, "schema", "schema must be a JSON object.")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise _fail(i, "schema", f"not a valid JSON schema ({exc.message}).") from exc
    return {"kind": "json_schema", "schema": schema}


def _spec_max_cost(i: int, spec: dict[str, Any]) -> dict[str, Any]:
    try:
        usd = Decimal(str(spec.get("usd")))
    except InvalidOperation as exc:
        raise _fail(i, "usd", "usd must be a number.") from exc
    if not usd.is_finite() or usd < 0:
        raise _fail(i, "usd", "usd must be a number ≥ 0.")
    return {"kind": "max_cost", "usd": str(usd)}


def _spec_max_latency(i: int, spec: dict[str, Any]) -> dict[str, Any]:
    ms = spec.get("ms")
    if not isinstance(ms, int) or isinstance(ms, bool) or ms <= 0:
        raise _fail(i, "ms", "ms must be a whole number > 0.")
    return {"kind": "max_latency", "ms": ms}


def _spec_judge(i: int, spec: dict[str, Any]) -> dict[str, Any]:
    rubric, model = spec.get("rubric"), spec.get("model")
    if not isinstance(rubric, str) or not rubric.strip():
        raise _fail(i, "rubric", "rubric is required.")
    if not isinstance(model, str) or not model.strip():
        raise _fail(i, "model", "model is required (an alias or provider:model).")
    return {"kind": "judge", "rubric": rubric.strip(), "model": model.strip()}


_VALIDATE: dict[str, Callable[[int, dict[str, Any]], dict[str, Any]]] = {
    "exact": _spec_exact,
    "regex": _spec_regex,
    "json_schema": _spec_json_schema,
    "max_cost": _spec_max_cost,
    "max_latency": _spec_max_latency,
    "judge": _spec_judge,
}


def validated_specs(specs: Any) -> list[dict[str, Any]]:
    """The specs, normalised; raises ValidationFailed naming the evaluator and field."""
    if not isinstance(specs, list) or not specs:
        raise ValidationFailed(
            "Add at least one evaluator.", fields={"evaluators": ["At least one."]}
        )
    out: list[dict[str, Any]] = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or spec.get("kind") not in KINDS:
            raise _fail(i, "kind", f"kind must be one of: {', '.join(KINDS)}.")
        out.append(_VALIDATE[spec["kind"]](i, spec))
    return out
