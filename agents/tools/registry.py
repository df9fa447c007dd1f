from __future__ import annotations

from agents.tools.base import Tool
from agents.tools.calculator import Calculator
from agents.tools.clock import CurrentTime
from agents.tools.http import HttpRequest
from agents.tools.knowledge import KnowledgeSearch

BUILTIN_TOOLS: dict[str, Tool] = {tool.name: tool for tool in (Calculator(), CurrentTime())}
BUILTIN_TOOLS[HttpRequest.name] = HttpRequest()
BUILTIN_TOOLS[KnowledgeSearch.name] = KnowledgeSearch()
