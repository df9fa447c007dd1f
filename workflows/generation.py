"""A workflow definition from a plain-language description ("Generate" in the builder).

    generated = generate_definition("Classify support tickets and page on-call…", access=access)
    generated.definition      # passes validators.validate in this workspace, always
    generated.notes           # what happened, for the user (repairs, template used, gaps)
    generated.used_llm        # True when the definition is the model's

With a usable model (`generation_model()`: an alias of the workspace with a target that is not
the offline provider) the model is asked, through the gateway, for a definition matching
DEFINITION_SCHEMA, told what the workspace has (agents, tools, workflows, the alias to use).
Its answer is validated; the problems go back to it for ONE repair round. When there is no
usable model, the call fails, or the repaired answer is still invalid, the rule-based
generator takes over: the library template whose words overlap the description most (among
those that validate here), adapted to it, or a one-step workflow when nothing fits.
Nothing is written except the gateway's ledger rows.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from agents.gateway.calls import UsageContext, gateway_complete
from agents.models import Agent, ModelAlias, ProviderKind
from agents.providers.base import ChatRequest, Message
from agents.tools.registry import BUILTIN_TOOLS
from core.exceptions import ApplicationError, ValidationFailed
from tenants.permissions import Access, Perm
from workflows import library, validators
from workflows.definition import DEFINITION_SCHEMA, NODE_TYPES, SCHEMA_VERSION
from workflows.expressions import FUNCTIONS
from workflows.limits import plan_limits
from workflows.models import Workflow

MIN_DESCRIPTION = 3
MAX_DESCRIPTION = 4000
MAX_ANSWER_TOKENS = 8000
MAX_ISSUES_SHOWN = 20
# What each node type's output looks like (docs/workflows.md, "Node types"): the model needs
# it to write `steps.X.…` references that exist.
NODE_OUTPUTS = {
    "agent": "{text, data, agent_version, tool_steps}",
    "llm": "{text, data} (data: the parsed JSON when output_schema is set)",
    "tool": "{result} (the tool's answer as text)",
    "condition": "{result}; outgoing edges need branch true or false",
    "router": "{route}; outgoing edges need branch = a route name",
    "parallel": "its input; starts every outgoing branch",
    "join": "{step_id: output} of the joined branches",
    "map": "list of the body's outputs, in order (body reads item and index)",
    "transform": "the rendered value",
    "code": "what main(inputs) returns (config.inputs: object of templates)",
    "approval": "{approved, comment, decided_by}; outgoing edges need branch approved/rejected",
    "sub_workflow": "the child workflow's output",
    "webhook_wait": "the JSON body posted to the step's resume URL",
}
_STOPWORD_TEXT = (
    "the and for with from that this then when into each every them they their our your you "
    "are was were has have had not but all any can will would should could about after before "
    "over under also just like want need needs using use used via out its get gets one two "
    "some more most very what which who whom how why where there here make makes made "
    "workflow workflows step steps run runs automatically automate automation please"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True)
class Generated:
    definition: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    used_llm: bool = False
    name: str = ""  # a suggested name for the workflow
    template_key: str = ""  # the library template the rule-based generator adapted


# --- which model ---------------------------------------------------------------------------


def generation_model() -> str | None:
    """The alias to ask: `default` if it can reach a real provider, else the first alias (by
    name) that can; None when every alias is offline-only or lacks a key. A target can reach a
    provider when it is not the offline kind and has a credential or a platform key."""
    aliases = ModelAlias.objects.prefetch_related("targets").order_by("name")
    usable = [
        alias.name
        for alias in aliases
        if any(
            target.kind != ProviderKind.OFFLINE
            and (target.credential_id is not None or settings.LLM_PLATFORM_KEYS.get(target.kind))
            for target in alias.targets.all()
        )
    ]
    if library.DEFAULT_MODEL in usable:
        return library.DEFAULT_MODEL
    return usable[0] if usable else None


def _step_model(preferred: str | None) -> str:
    """The alias generated steps use: `default` when the workspace has it, else the usable
    alias, else `default` anyway (the note says to add it)."""
    if ModelAlias.objects.filter(name=library.DEFAULT_MODEL).exists():
        return library.DEFAULT_MODEL
    return preferred or library.DEFAULT_MODEL


# --- asking the model ----------------------------------------------------------------------


def _system_prompt(step_model: str) -> str:
    limits = plan_limits()
    agents = list(
        Agent.objects.filter(archived_at__isnull=True)
        .order_by("name")
        .values_list("name", flat=True)
    )
    workflows = list(
        Workflow.objects.filter(archived_at__isnull=True, active_version__isnull=False)
        .order_by("name")
        .values_list("name", flat=True)[:50]
    )
    node_lines = "\n".join(
        f"- {name}: {node.description} config schema: {json.dumps(node.config_schema)}; "
        f"output: {NODE_OUTPUTS[name]}"
        for name, node in NODE_TYPES.items()
    )
    tools = ", ".join(
        f"{name} (arguments: {json.dumps(tool.parameters.get('properties', {}))})"
        for name, tool in sorted(BUILTIN_TOOLS.items())
    )
    return f"""You design workflows for an automation platform. Turn the user's description into
one workflow definition (JSON). Prefer few, well-named steps; write real prompts.

The document: schema_version {SCHEMA_VERSION}; inputs: name -> {{type, required, default,
description}}; steps: [{{id, type, name, config, retry?, timeout_seconds?}}]; edges: [{{from, to,
branch?}}]; output: name -> template (what the run returns).

Rules the validator enforces:
- Exactly one entry step (no incoming edge); every step reachable from it; no cycles (repeat
  work with a map step). Step ids: letters, digits, _ and -, starting with a letter.
- Edges leaving a condition need branch "true" or "false"; leaving an approval "approved" or
  "rejected"; leaving a router, a route name. No other edge has a branch.
- Templates are strings with {{{{ expression }}}} parts. Expressions are Python-like (no
  lambdas, no comprehensions) and read: input.<declared input>, steps.<step id>.<field> (only
  steps that run before the reader), item and index inside a map body. Functions:
  {", ".join(sorted(FUNCTIONS))}.
- condition.expression, router.expression and map.items are bare expressions (no braces).
- At most {limits.max_steps} steps, {limits.max_fan_out} outgoing edges per step, map
  concurrency {limits.max_map_concurrency}.

Node types:
{node_lines}

This workspace:
- llm steps and llm routers use the model "{step_model}".
- agents (for agent steps, named in config.agent; leave config.agent_id out, saving adds it):
  {", ".join(agents) or "none: do not use agent steps"}.
- tools (for tool steps): {tools}.
- workflows (for sub_workflow steps): {", ".join(workflows) or "none: do not use sub_workflow"}.
"""


def _instruction() -> str:
    return (
        "\n\nAnswer with a single JSON value and nothing else (no prose, no code fences). "
        f"It must match this JSON schema:\n{json.dumps(DEFINITION_SCHEMA)}"
    )


def _parse(text: str) -> tuple[Any, list[str]]:
    """The JSON object in the answer (code fences and prose around it tolerated)."""
    candidate = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", candidate, re.DOTALL)
    if fenced:
        candidate = fenced.group(1).strip()
    start, end = candidate.find("{"), candidate.rfind("}")
    if start != -1 and end > start:
        candidate = candidate[start : end + 1]
    try:
        return json.loads(candidate), []
    except json.JSONDecodeError as exc:
        return None, [f"definition: the answer is not JSON ({exc.msg} at position {exc.pos})"]


def _check(text: str) -> tuple[Any, list[str]]:
    document, problems = _parse(text)
    if problems:
        return None, problems
    return document, [str(issue) for issue in validators.validate(document)]


def _ask(model: str, system: str, messages: list[Message]) -> str:
    result = gateway_complete(
        model=model,
        request=ChatRequest(
            model=model,
            messages=tuple(messages),
            system=system,
            temperature=0.2,
            max_tokens=MAX_ANSWER_TOKENS,
            output_schema=DEFINITION_SCHEMA,
        ),
        context=UsageContext(),
    )
    return result.result.text


def _repair_request(problems: list[str]) -> str:
    shown = problems[:MAX_ISSUES_SHOWN]
    more = f"\n(and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
    return (
        "The platform's validator rejected that definition:\n"
        + "\n".join(f"- {p}" for p in shown)
        + more
        + "\nFix every problem and answer with the whole corrected definition as JSON only."
    )


def _from_model(
    description: str, model: str, step_model: str
) -> tuple[dict[str, Any] | None, list[str]]:
    """(definition, notes): the model's valid definition, or None and why not."""
    system = _system_prompt(step_model) + _instruction()
    messages = [Message(role="user", content=description)]
    try:
        answer = _ask(model, system, messages)
        document, problems = _check(answer)
        if not problems:
            return document, [f"Designed by the model “{model}”."]
        messages += [
            Message(role="assistant", content=answer),
            Message(role="user", content=_repair_request(problems)),
        ]
        repaired = _ask(model, system, messages)
    except ApplicationError as exc:  # GatewayError, UnknownModel, budget refusals
        return None, [f"The model “{model}” could not be asked ({exc.message})."]
    document, still = _check(repaired)
    if not still:
        return document, [
            f"Designed by the model “{model}”; its first answer had {len(problems)} "
            "problem(s), which it fixed."
        ]
    return None, [
        f"The model “{model}” answered twice with an invalid definition "
        f"(first problem: {still[0]})."
    ]


# --- rule-based ----------------------------------------------------------------------------


def _words(text: str) -> set[str]:
    found = set()
    for word in re.findall(r"[a-z][a-z0-9-]+", text.lower()):
        if len(word) < 3 or word in _STOPWORDS:
            continue
        for suffix in ("ing", "ies", "es", "ed", "s"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 4:
                word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
                break
        found.add(word)
    return found


def _template_words(template: library.Template) -> tuple[set[str], set[str]]:
    """(strong, weak) words: name and category count double."""
    strong = _words(f"{template.name} {template.category} {template.key.replace('-', ' ')}")
    steps = " ".join(s.get("name", "") for s in template.definition.get("steps", []))
    return strong, _words(f"{template.description} {steps}")


def _ranked(description: str) -> list[tuple[int, library.Template]]:
    wanted = _words(description)
    scored = []
    for template in library.templates():
        strong, weak = _template_words(template)
        score = 2 * len(wanted & strong) + len(wanted & (weak - strong))
        if score:
            scored.append((score, template))
    return sorted(scored, key=lambda pair: -pair[0])


def suggested_name(description: str) -> str:
    """The description's first sentence, shortened to a title."""
    first = re.split(r"(?<=[.!?])\s|\n", description.strip(), maxsplit=1)[0].rstrip(".!?")
    words = first.split()
    name = ""
    for word in words:
        if len(name) + len(word) + 1 > 60:
            break
        name = f"{name} {word}".strip()
    name = name or "Generated workflow"
    return name[0].upper() + name[1:]


def _plain(text: str) -> str:
    """The user's text where a template expects literal text: braces would start one."""
    return text.replace("{", "(").replace("}", ")")


def _bodies(definition: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    for step in definition.get("steps", []):
        config = step.get("config") or {}
        yield step["type"], config
        if step["type"] == "map" and isinstance(config.get("node"), dict):
            yield config["node"].get("type", ""), config["node"].get("config") or {}


def _adapt(definition: dict[str, Any], description: str, step_model: str) -> dict[str, Any]:
    """The template's definition aimed at the user's goal: every model step is told the goal
    and uses the workspace's alias."""
    adapted = copy.deepcopy(definition)
    goal = f"The goal of this workflow, in its author's words: {_plain(description)}\n\n"
    for node_type, config in _bodies(adapted):
        if node_type == "llm" or (node_type == "router" and config.get("mode") == "llm"):
            config["model"] = step_model
        if node_type == "llm":
            config["system"] = goal + config.get("system", "")
    return adapted


def _one_step(description: str, step_model: str) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "inputs": {
            "request": {"type": "string", "required": True, "description": "What to work on"}
        },
        "steps": [
            {
                "id": "answer",
                "type": "llm",
                "name": "Answer",
                "config": {
                    "model": step_model,
                    "system": _plain(description),
                    "prompt": "{{ input.request }}",
                },
            }
        ],
        "edges": [],
        "output": {"answer": "{{ steps.answer.text }}"},
    }


def _rule_based(description: str, step_model: str) -> Generated:
    name = suggested_name(description)
    passed_over: list[str] = []
    for _, template in _ranked(description):
        definition = _adapt(template.definition, description, step_model)
        if validators.validate(definition):
            missing = [*template.agents, *template.workflows]
            passed_over.append(f"“{template.name}” (needs {', '.join(missing) or 'changes'})")
            continue
        notes = [
            f"Started from the template “{template.name}”: rename steps, edit prompts and "
            f"inputs ({', '.join(definition.get('inputs', {})) or 'none'}) to fit."
        ]
        if passed_over:
            notes.append(f"Closer templates need what this workspace lacks: {passed_over[0]}.")
        return Generated(definition, notes, False, name=name, template_key=template.key)
    notes = ["No template matched the description: a one-step workflow to start from."]
    if passed_over:
        notes.append(f"Closer templates need what this workspace lacks: {passed_over[0]}.")
    return Generated(_one_step(description, step_model), notes, False, name=name)


# --- entry point ---------------------------------------------------------------------------


def generate_definition(description: str, *, access: Access) -> Generated:
    """A valid definition for `description` (see the module docstring). Runs in the workspace
    schema. ValidationFailed when the description is empty or too long."""
    access.require(Perm.BUILD)
    description = (description or "").strip()
    if not MIN_DESCRIPTION <= len(description) <= MAX_DESCRIPTION:
        message = f"Describe the workflow in {MIN_DESCRIPTION}–{MAX_DESCRIPTION} characters."
        raise ValidationFailed(message, fields={"description": [message]})
    model = generation_model()
    step_model = _step_model(model)
    notes: list[str] = []
    if model is not None:
        definition, notes = _from_model(description, model, step_model)
        if definition is not None:
            return Generated(definition, notes, True, name=suggested_name(description))
    else:
        notes.append(
            "No model that can reach a provider is configured, so a template was adapted "
            "instead of asking one."
        )
    generated = _rule_based(description, step_model)
    if (
        step_model == library.DEFAULT_MODEL
        and not ModelAlias.objects.filter(name=library.DEFAULT_MODEL).exists()
    ):
        notes.append(
            f"Its model steps use the alias “{library.DEFAULT_MODEL}”, which this workspace "
            "does not have yet: add it under Models."
        )
    return Generated(
        generated.definition,
        notes + generated.notes,
        False,
        name=generated.name,
        template_key=generated.template_key,
    )
