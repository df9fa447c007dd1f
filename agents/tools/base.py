from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import jsonschema

from agents.providers.base import ToolSpec


class ToolFailed(Exception):
    """The tool could not do what was asked; the message goes back to the model."""


@dataclass(frozen=True)
class ToolContext:
    """What a tool knows about the call. Fixed from the agent version before the first model
    call; nothing a tool returns or a model says can change it."""

    agent_id: int | None = None
    knowledge_base_ids: tuple[int, ...] = ()


NO_TOOL_CONTEXT = ToolContext()


class Tool(abc.ABC):
    name: str
    description: str
    parameters: dict[str, Any]

    def spec(self) -> ToolSpec:
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)

    def validate(self, arguments: dict[str, Any]) -> None:
        """Raise ToolFailed naming the argument that does not match the JSON schema."""
        errors = sorted(
            jsonschema.Draft202012Validator(self.parameters).iter_errors(arguments),
            key=lambda e: list(e.path),
        )
        if errors:
            first = errors[0]
            where = ".".join(str(p) for p in first.path) or "arguments"
            raise ToolFailed(f"Invalid arguments for {self.name}: {where}: {first.message}")

    @abc.abstractmethod
    def run(self, arguments: dict[str, Any], context: ToolContext = NO_TOOL_CONTEXT) -> str:
        """Do the work; the returned text is what the model sees."""
