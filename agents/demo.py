"""Demo agents for the seeded workspace: useful with the offline provider, better with keys."""

from __future__ import annotations

from typing import Any

from django_tenants.utils import schema_context

from agents import services
from agents.models import Agent, AliasTarget, ModelAlias
from tenants.models import Workspace
from tenants.permissions import Access

DEMO_ALIAS = "default"
DEMO_AGENTS: list[dict[str, Any]] = [
    {
        "name": "Support triage",
        "category": "Support",
        "description": "Reads a customer email, names the product area and urgency, drafts a "
        "first reply.",
        "system_prompt": "You triage customer support emails. Answer with: area, urgency "
        "(low/normal/high), and a short, friendly first reply.",
    },
    {
        "name": "Finance calculator",
        "category": "Finance",
        "description": "Answers money questions exactly: margins, VAT, loan payments.",
        "system_prompt": "Use the calculator for every number you state.",
        "tools": ["calculator"],
    },
    {
        "name": "Meeting scheduler",
        "category": "Productivity",
        "description": "Knows the time in every time zone when planning across offices.",
        "system_prompt": "Check the current time in each attendee's zone before proposing.",
        "tools": ["current_time"],
    },
]


def seed_demo_agents(*, access: Access, workspace: Workspace) -> int:
    """Create what is missing (matched by name); returns how many agents were created."""
    created = 0
    with schema_context(workspace.schema_name):
        alias, made = ModelAlias.objects.get_or_create(
            name=DEMO_ALIAS, defaults={"description": "Demo: the offline model."}
        )
        if made:
            AliasTarget.objects.create(alias=alias, position=0, kind="offline", model="demo")
        for spec in DEMO_AGENTS:
            if not Agent.objects.filter(name=spec["name"]).exists():
                services.agent_create(access=access, model=DEMO_ALIAS, **spec)
                created += 1
    return created
