"""Workflows can be offered as MCP tools (docs/mcp.md): off by default."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0003_agent_steps_by_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="workflow",
            name="mcp_exposed",
            field=models.BooleanField(default=False),
        ),
    ]
