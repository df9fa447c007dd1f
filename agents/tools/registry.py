from __future__ import annotations

from agents.tools.base import Tool
from agents.tools.calculator import Calculator
from agents.tools.clock import CurrentTime

BUILTIN_TOOLS: dict[str, Tool] = {tool.name: tool for tool in (Calculator(), CurrentTime())}
