from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone

from agents.tools.base import NO_TOOL_CONTEXT, Tool, ToolContext, ToolFailed


class CurrentTime(Tool):
    name = "current_time"
    description = "The current date and time, in UTC or in an IANA time zone like Europe/Paris."
    parameters = {
        "type": "object",
        "properties": {"timezone": {"type": "string", "default": "UTC", "maxLength": 64}},
        "additionalProperties": False,
    }

    def run(self, arguments: dict[str, Any], context: ToolContext = NO_TOOL_CONTEXT) -> str:
        name = arguments.get("timezone") or "UTC"
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ToolFailed(f"Unknown time zone '{name}'. Use an IANA name like 'UTC'.") from exc
        now: datetime = timezone.now().astimezone(zone)
        return now.strftime(f"%A %d %B %Y, %H:%M:%S ({name}, UTC%z)")
