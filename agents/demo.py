"""Demo agents for the seeded workspace: useful with the offline provider, better with keys."""

from __future__ import annotations

from typing import Any

from django_tenants.utils import schema_context

from agents import services
from agents.knowledge.demo import seed_demo_knowledge
from agents.models import Agent, AliasTarget, AllowedHost, ModelAlias
from tenants.models import Workspace
from tenants.permissions import Access

DEMO_ALIAS = "default"
# Hosts the research agent may fetch (the HTTP tool refuses everything else).
DEMO_ALLOWED_HOSTS = ("en.wikipedia.org", "api.github.com", "*.python.org")
SQL_REVIEW_FORMAT = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "description": "What the query returns, in one sentence."},
        "tables": {"type": "array", "items": {"type": "string"}},
        "risks": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Performance or correctness risks, e.g. a missing join condition.",
        },
    },
    "required": ["summary", "tables", "risks"],
    "additionalProperties": False,
}
DEMO_AGENTS: list[dict[str, Any]] = [
    {
        "name": "Support triage",
        "category": "Support",
        "description": "Reads a customer email, finds the answer in the help center, names the "
        "product area and urgency, drafts a first reply with citations.",
        "system_prompt": "You triage customer support emails. Search the help center with "
        "knowledge_search before answering and cite passages as [n]. Answer with: area, urgency "
        "(low/normal/high), and a short, friendly first reply.",
        "tools": ["knowledge_search"],
        "memory_mode": "last_turns",
        "memory_turns": 6,
        "cache_enabled": True,
        "knowledge": True,
    },
    {
        "name": "Research assistant",
        "category": "Research",
        "description": "Fetches pages from allowed sites (Wikipedia, GitHub API, python.org) and "
        "answers with the URLs it read.",
        "system_prompt": "Answer research questions. Use http_request to read sources from the "
        "allowed sites, quote what you use, and list the URLs at the end. Say so when a source "
        "could not be read.",
        "tools": ["http_request", "calculator"],
        "memory_mode": "summary",
    },
    {
        "name": "SQL explainer",
        "category": "Engineering",
        "description": "Explains a SQL query in plain words: what it returns, which tables it "
        "reads, and its risks. Answers in a fixed JSON format other tools can read.",
        "system_prompt": "You explain SQL to analysts. Be concrete about joins, filters and "
        "aggregations; flag missing join conditions, SELECT *, functions on indexed columns and "
        "unbounded deletes or updates.",
        "output_schema": SQL_REVIEW_FORMAT,
        "cache_enabled": True,
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
        for host in DEMO_ALLOWED_HOSTS:
            AllowedHost.objects.get_or_create(host=host)
        help_center = seed_demo_knowledge()
        for spec in DEMO_AGENTS:
            if Agent.objects.filter(name__iexact=spec["name"]).exists():  # names ignore case
                continue
            config = {k: v for k, v in spec.items() if k != "knowledge"}
            if spec.get("knowledge"):
                config["knowledge_base_ids"] = [help_center.pk]
            services.agent_create(access=access, model=DEMO_ALIAS, **config)
            created += 1
    return created
