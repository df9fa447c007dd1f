"""The workflow template library: ready-made definitions a workspace copies and then owns.

    templates()                                   # every template, by category then name
    template_get("support-triage")                # NotFound for an unknown key
    template_prepare(access=access, template=t)   # create what its steps name, if missing

Each template is one YAML file in `templates/` (its name is the key): `name`, `category`,
`description`, `example_inputs` (inputs a run accepts, used by the tests and the demo) and
`definition` (docs/workflows.md). The files are read once per process. Model steps use the
alias `default`; agent steps name agents of `agents.demo` ("Support triage", "Research
assistant"); sub-workflow steps name another template's workflow. `template_prepare` creates
whichever of those the workspace does not have, so the definition validates and runs.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from core.exceptions import NotFound
from tenants.permissions import Access, Perm

TEMPLATES_DIR = Path(__file__).parent / "templates"
DEFAULT_MODEL = "default"
KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,59}$")
_FIELDS = ("name", "category", "description", "example_inputs", "definition")


@dataclass(frozen=True)
class Template:
    key: str
    name: str
    category: str
    description: str
    definition: dict[str, Any]
    example_inputs: dict[str, Any]

    def _bodies(self) -> list[tuple[str, dict[str, Any]]]:
        """(type, config) of every step and every map body."""
        found = []
        for step in self.definition.get("steps", []):
            config = step.get("config") or {}
            found.append((step["type"], config))
            if step["type"] == "map":
                body = config.get("node") or {}
                found.append((body.get("type", ""), body.get("config") or {}))
        return found

    @property
    def node_types(self) -> frozenset[str]:
        return frozenset(node_type for node_type, _ in self._bodies())

    @property
    def agents(self) -> tuple[str, ...]:
        """Names of the agents its agent steps ask."""
        return tuple(dict.fromkeys(c["agent"] for t, c in self._bodies() if t == "agent"))

    @property
    def workflows(self) -> tuple[str, ...]:
        """Names of the workflows its sub-workflow steps run."""
        return tuple(dict.fromkeys(c["workflow"] for t, c in self._bodies() if t == "sub_workflow"))

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(
            dict.fromkeys(
                c.get("model") or DEFAULT_MODEL
                for t, c in self._bodies()
                if t == "llm" or (t == "router" and c.get("mode") == "llm")
            )
        )


class TemplateFileError(ValueError):
    """A template file that does not have the expected shape (a bug in this package)."""


def _load(path: Path) -> Template:
    key = path.stem
    if not KEY_PATTERN.match(key):
        raise TemplateFileError(f"{path.name}: the file name must be a key like 'support-triage'")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TemplateFileError(f"{path.name}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise TemplateFileError(f"{path.name}: expected a mapping at the top")
    missing = [f for f in _FIELDS if f not in data]
    unknown = sorted(set(data) - set(_FIELDS))
    if missing or unknown:
        raise TemplateFileError(f"{path.name}: missing {missing}, unknown {unknown}")
    for field in ("name", "category", "description"):
        if not isinstance(data[field], str) or not data[field].strip():
            raise TemplateFileError(f"{path.name}: '{field}' must be a non-empty string")
    for field in ("example_inputs", "definition"):
        if not isinstance(data[field], dict):
            raise TemplateFileError(f"{path.name}: '{field}' must be a mapping")
    # A JSON round trip: plain JSON values (what the database stores), and no YAML anchors
    # left shared between steps.
    plain = json.loads(json.dumps(data))
    return Template(
        key=key,
        name=plain["name"].strip(),
        category=plain["category"].strip(),
        description=" ".join(plain["description"].split()),
        definition=plain["definition"],
        example_inputs=plain["example_inputs"],
    )


@cache
def _library() -> tuple[Template, ...]:
    loaded = [_load(path) for path in sorted(TEMPLATES_DIR.glob("*.yaml"))]
    return tuple(sorted(loaded, key=lambda t: (t.category.lower(), t.name.lower())))


def _copy(template: Template) -> Template:
    """Callers get their own definition and inputs to change; the loaded ones stay intact."""
    return replace(
        template,
        definition=copy.deepcopy(template.definition),
        example_inputs=copy.deepcopy(template.example_inputs),
    )


def templates() -> list[Template]:
    """Every template, sorted by category then name."""
    return [_copy(t) for t in _library()]


def template_get(key: str) -> Template:
    for template in _library():
        if template.key == key:
            return _copy(template)
    raise NotFound(f"There is no workflow template '{key}'.")


def template_named(name: str) -> Template | None:
    """The template whose workflow is called `name` (what a sub-workflow step names)."""
    for template in _library():
        if template.name == name:
            return _copy(template)
    return None


def categories() -> list[str]:
    return sorted({t.category for t in _library()}, key=str.lower)


# --- what a template needs in the workspace --------------------------------------------------


def _agent_spec(name: str) -> dict[str, Any] | None:
    """The demo's settings for an agent (agents/demo.py), without its knowledge base and the
    search tool that needs one: created here, the agent has no documents yet."""
    from agents.demo import DEMO_AGENTS

    spec = next((s for s in DEMO_AGENTS if s["name"] == name), None)
    if spec is None:
        return None
    config = {k: copy.deepcopy(v) for k, v in spec.items() if k != "knowledge"}
    config["tools"] = [t for t in config.get("tools", []) if t != "knowledge_search"]
    return config


def default_model_alias_ensure(access: Access) -> list[str]:
    """Make sure the workspace has the `default` model alias (the offline model) when the actor
    may add it; returns notes for the person saying what was done, or what to ask an admin."""
    from agents import aliases
    from agents.models import ModelAlias

    if ModelAlias.objects.filter(name=DEFAULT_MODEL).exists():
        return []
    if not access.can(Perm.WORKSPACE_UPDATE):
        return [
            f"This workflow uses the model alias “{DEFAULT_MODEL}”, which this workspace does "
            "not have yet: ask an admin to add it under Models."
        ]
    aliases.alias_save(
        access=access,
        name=DEFAULT_MODEL,
        description="Added for workflow templates: the offline model until you pick a provider.",
        targets=[aliases.TargetSpec(kind="offline", model="demo")],
    )
    return [
        f"Added the model alias “{DEFAULT_MODEL}” (the offline model, no network): point it at "
        "a provider under Models for real answers."
    ]


def _ensure_agents(access: Access, names: tuple[str, ...]) -> list[str]:
    """Create the agents the template names that no active agent of the workspace has
    (ignoring case, as agent names are unique); saving the workflow binds each name to its id."""
    from agents.model_names import OFFLINE_EXAMPLE
    from agents.models import Agent, ModelAlias
    from agents.services import agent_create

    notes: list[str] = []
    for name in names:
        if Agent.objects.filter(name__iexact=name, archived_at__isnull=True).exists():
            continue
        spec = _agent_spec(name)
        if spec is None:
            notes.append(f"Create an agent named “{name}”: this workflow asks it.")
            continue
        model = DEFAULT_MODEL
        if not ModelAlias.objects.filter(name=DEFAULT_MODEL).exists():
            model = OFFLINE_EXAMPLE  # what `default` would point at; a member cannot add it
            notes.append(f"The agent “{name}” uses {OFFLINE_EXAMPLE}: pick a model on its page.")
        agent_create(access=access, model=model, **spec)
        notes.append(f"Created the agent “{name}”.")
    return notes


def _ensure_workflows(access: Access, names: tuple[str, ...], depth: int) -> list[str]:
    from workflows import services
    from workflows.models import Workflow, WorkflowVersion

    notes: list[str] = []
    for name in names:
        if Workflow.objects.filter(
            name=name, archived_at__isnull=True, active_version__isnull=False
        ).exists():
            continue
        child = template_named(name)
        if child is None or depth > 3:
            notes.append(f"Create a workflow named “{name}”: this workflow runs it.")
            continue
        notes += _prepare(access, child, depth + 1)
        services.workflow_create(
            access=access,
            name=child.name,
            description=child.description,
            category=child.category,
            definition=child.definition,
            source=WorkflowVersion.Source.TEMPLATE,
            note=f"From the template “{child.name}” (a sub-workflow of another template)",
            template_key=child.key,
        )
        notes.append(f"Created the workflow “{child.name}”, which this one runs.")
    return notes


def _prepare(access: Access, template: Template, depth: int) -> list[str]:
    notes: list[str] = []
    if template.models or template.agents:
        notes += default_model_alias_ensure(access)
    notes += _ensure_agents(access, template.agents)
    notes += _ensure_workflows(access, template.workflows, depth)
    return notes


def template_prepare(*, access: Access, template: Template) -> list[str]:
    """Create what the template's steps name and the workspace lacks: the model alias
    `default` (the offline model; admins only), the agents it asks (with the demo's
    settings) and the workflows it runs as sub-workflows (from their own templates). Returns a
    note per thing created or still missing. Runs in the current workspace schema; call it in
    the transaction that creates the workflow."""
    access.require(Perm.BUILD)
    return _prepare(access, template, 0)
