"""The workflow definition document (docs/workflows.md): its JSON schema per node type, and a
read-only view of a validated definition for the engine and the pages.

    definition = Definition.parse(version.definition)   # after validators.validate(...) passed
    definition.entry, definition.successors("classify"), definition.step("classify").config
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

SCHEMA_VERSION = 1
STEP_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
DEFAULT_TIMEOUT_SECONDS = 300
DEFAULT_BACKOFF_SECONDS = 2.0

_TEMPLATE = {"type": "string", "maxLength": 20000}
_TEMPLATES = {"type": "object", "additionalProperties": True}


@dataclass(frozen=True)
class NodeType:
    name: str
    label: str
    description: str
    config_schema: dict[str, Any]
    branches: tuple[str, ...] = ()  # fixed branch names of outgoing edges; router: its routes
    map_body: bool = False  # may be the per-item body of a map node


def json_type(value: Any) -> str:
    """The JSON Schema type name of a parsed JSON value ("integer", "array", …)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _config(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required or [],
        "additionalProperties": False,
    }


_LLM_PROPERTIES = {
    "model": {"type": "string", "minLength": 1, "maxLength": 170},
    "system": _TEMPLATE,
    "prompt": _TEMPLATE,
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 64000},
    "output_schema": {"type": "object"},
}

NODE_TYPES: dict[str, NodeType] = {
    node.name: node
    for node in [
        NodeType(
            "agent",
            "Agent",
            "Ask one of the workspace's agents (its model, prompt, tools and guardrails).",
            # `agent_id` is the reference; `agent` (the name) is a label the platform rewrites
            # on save, and what imports, templates and exports use (workflows/agent_refs.py).
            _config(
                {
                    "agent_id": {"type": "integer", "minimum": 1},
                    "agent": {"type": "string", "minLength": 1, "maxLength": 80},
                    "prompt": _TEMPLATE,
                },
                ["prompt"],
            ),
            map_body=True,
        ),
        NodeType(
            "llm",
            "LLM prompt",
            "Send one prompt to a model; optionally require a JSON answer.",
            _config(_LLM_PROPERTIES, ["model", "prompt"]),
            map_body=True,
        ),
        NodeType(
            "tool",
            "Tool",
            "Call a built-in tool with arguments.",
            _config(
                {"tool": {"type": "string", "minLength": 1}, "arguments": _TEMPLATES}, ["tool"]
            ),
            map_body=True,
        ),
        NodeType(
            "condition",
            "Condition",
            "Take the true or the false branch on an expression.",
            _config({"expression": {"type": "string", "minLength": 1}}, ["expression"]),
            branches=("true", "false"),
        ),
        NodeType(
            "router",
            "Router",
            "Choose one of several branches, by an expression or by asking a model.",
            {
                **_config(
                    {
                        "mode": {"enum": ["expression", "llm"]},
                        "routes": {
                            "type": "array",
                            "minItems": 2,
                            "maxItems": 20,
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string", "pattern": STEP_ID_PATTERN},
                                    "description": {"type": "string", "maxLength": 500},
                                },
                                "required": ["name"],
                                "additionalProperties": False,
                            },
                        },
                        "expression": {"type": "string"},
                        "model": {"type": "string", "maxLength": 170},
                        "prompt": _TEMPLATE,
                    },
                    ["mode", "routes"],
                ),
            },
        ),
        NodeType(
            "parallel",
            "Parallel",
            "Start every outgoing branch at once.",
            _config({}),
        ),
        NodeType(
            "join",
            "Join",
            "Wait for the incoming branches: all of them, the first, or the first N.",
            _config(
                {"mode": {"enum": ["all", "first", "n"]}, "n": {"type": "integer", "minimum": 1}},
                ["mode"],
            ),
        ),
        NodeType(
            "map",
            "Map",
            "Run a step once per item of a list, a few at a time.",
            _config(
                {
                    "items": {"type": "string", "minLength": 1},
                    "concurrency": {"type": "integer", "minimum": 1},
                    "node": {
                        "type": "object",
                        "properties": {"type": {"type": "string"}, "config": {"type": "object"}},
                        "required": ["type", "config"],
                        "additionalProperties": False,
                    },
                },
                ["items", "node"],
            ),
        ),
        NodeType(
            "transform",
            "Transform",
            "Build a value from earlier outputs with templates and expressions.",
            _config({"value": {}}, ["value"]),
            map_body=True,
        ),
        NodeType(
            "code",
            "Code",
            "Run a short Python function on the step's inputs, sandboxed, and return JSON.",
            # `main(inputs)` runs in workflows/sandbox (docs/sandbox.md); the validators compile
            # `code` when saving, so a syntax error is named with its line.
            _config(
                {
                    "code": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 20000,
                        "contentMediaType": "text/x-python",
                    },
                    "inputs": _TEMPLATES,
                },
                ["code"],
            ),
            map_body=True,
        ),
        NodeType(
            "approval",
            "Human approval",
            "Wait until a workspace member approves or rejects, with a comment.",
            _config(
                {"message": _TEMPLATE, "approvers": {"enum": ["admins", "members"]}}, ["message"]
            ),
            branches=("approved", "rejected"),
        ),
        NodeType(
            "sub_workflow",
            "Sub-workflow",
            "Run another workflow of the workspace and use its output.",
            _config(
                {
                    "workflow": {"type": "string", "minLength": 1, "maxLength": 80},
                    "version": {"type": ["integer", "null"], "minimum": 1},
                    "inputs": _TEMPLATES,
                },
                ["workflow"],
            ),
            map_body=True,
        ),
        NodeType(
            "webhook_wait",
            "Wait for webhook",
            "Pause until a JSON body is posted to the step's resume URL.",
            _config({"timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 2592000}}),
        ),
    ]
}

DEFINITION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "inputs": {
            "type": "object",
            "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"},
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "type": {"enum": ["string", "number", "integer", "boolean", "object", "array"]},
                    "required": {"type": "boolean"},
                    "default": {},
                    "description": {"type": "string", "maxLength": 500},
                },
                "required": ["type"],
                "additionalProperties": False,
            },
        },
        "steps": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "pattern": STEP_ID_PATTERN},
                    "type": {"enum": sorted(NODE_TYPES)},
                    "name": {"type": "string", "maxLength": 120},
                    "config": {"type": "object"},
                    "retry": {
                        "type": "object",
                        "properties": {
                            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 10},
                            "backoff_seconds": {"type": "number", "minimum": 0, "maximum": 3600},
                        },
                        "additionalProperties": False,
                    },
                    "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
                    "position": {
                        "type": "object",
                        "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                    },
                },
                "required": ["id", "type", "config"],
                "additionalProperties": False,
            },
        },
        "edges": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "from": {"type": "string"},
                    "to": {"type": "string"},
                    "branch": {"type": "string", "maxLength": 64},
                },
                "required": ["from", "to"],
                "additionalProperties": False,
            },
        },
        "output": {"type": "object", "additionalProperties": True},
    },
    "required": ["schema_version", "steps"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Step:
    id: str
    type: str
    name: str
    config: dict[str, Any]
    max_attempts: int
    backoff_seconds: float
    timeout_seconds: int

    @property
    def label(self) -> str:
        return self.name or self.id


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    branch: str = ""


@dataclass(frozen=True)
class Definition:
    inputs: dict[str, dict[str, Any]]
    steps: tuple[Step, ...]
    edges: tuple[Edge, ...]
    output: dict[str, Any] | None

    @classmethod
    def parse(cls, document: dict[str, Any]) -> Definition:
        """A view of a definition the validators accepted (it does not validate)."""
        steps = tuple(
            Step(
                id=s["id"],
                type=s["type"],
                name=s.get("name", ""),
                config=s.get("config") or {},
                max_attempts=(s.get("retry") or {}).get("max_attempts", 1),
                backoff_seconds=(s.get("retry") or {}).get(
                    "backoff_seconds", DEFAULT_BACKOFF_SECONDS
                ),
                timeout_seconds=s.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS),
            )
            for s in document.get("steps", [])
        )
        edges = tuple(
            Edge(source=e["from"], target=e["to"], branch=e.get("branch", ""))
            for e in document.get("edges", [])
        )
        return cls(
            inputs=dict(document.get("inputs") or {}),
            steps=steps,
            edges=edges,
            output=document.get("output"),
        )

    @cached_property
    def _by_id(self) -> dict[str, Step]:
        return {s.id: s for s in self.steps}

    def step(self, step_id: str) -> Step:
        return self._by_id[step_id]

    def has_step(self, step_id: str) -> bool:
        return step_id in self._by_id

    def successors(self, step_id: str) -> list[Edge]:
        return [e for e in self.edges if e.source == step_id]

    def predecessors(self, step_id: str) -> list[Edge]:
        return [e for e in self.edges if e.target == step_id]

    @property
    def entry_ids(self) -> list[str]:
        targets = {e.target for e in self.edges}
        return [s.id for s in self.steps if s.id not in targets]

    @property
    def entry(self) -> Step:
        return self.step(self.entry_ids[0])

    @property
    def sink_ids(self) -> list[str]:
        sources = {e.source for e in self.edges}
        return [s.id for s in self.steps if s.id not in sources]

    def upstream(self, step_id: str) -> set[str]:
        """Every step with a path to this one (its ancestors)."""
        seen: set[str] = set()
        stack = [e.source for e in self.predecessors(step_id)]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(e.source for e in self.predecessors(current))
        return seen
