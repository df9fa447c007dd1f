"""Agent names are unique in a workspace, ignoring case, among agents that are not archived.

Workflows reference agents by id now (workflows.0003); a name is what people pick an agent by,
so two active agents may not share one. Existing duplicates are renamed first: in each group of
names equal ignoring case, the oldest agent (lowest id) keeps its name, which is the agent a
name-based workflow step ran before (workflows.0003, which runs before this migration, already
stored that agent's id); the others get " (2)", " (3)", ... See docs/decisions.md §39.
"""

from django.db import migrations, models
from django.db.models.functions import Lower

NAME_MAX = 80


def unique_name(base: str, taken: set[str]) -> str:
    """`base` with the first free " (n)" suffix (n >= 2), cut to fit NAME_MAX."""
    n = 2
    while True:
        suffix = f" ({n})"
        candidate = base[: NAME_MAX - len(suffix)].rstrip() + suffix
        if candidate.lower() not in taken:
            return candidate
        n += 1


def rename_duplicates(apps, schema_editor):
    Agent = apps.get_model("agents", "Agent")
    active = list(Agent.objects.filter(archived_at__isnull=True).order_by("pk"))
    taken = {agent.name.lower() for agent in active}
    seen: set[str] = set()
    for agent in active:
        key = agent.name.lower()
        if key not in seen:
            seen.add(key)
            continue
        agent.name = unique_name(agent.name, taken)
        taken.add(agent.name.lower())
        seen.add(agent.name.lower())
        Agent.objects.filter(pk=agent.pk).update(name=agent.name)


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0011_workspace_foreign_keys_stay_in_the_workspace"),
    ]

    operations = [
        migrations.RunPython(rename_duplicates, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="agent",
            constraint=models.UniqueConstraint(
                Lower("name"),
                condition=models.Q(archived_at__isnull=True),
                name="agent_name_unique_ci",
                violation_error_message="An agent with this name already exists.",
            ),
        ),
    ]
