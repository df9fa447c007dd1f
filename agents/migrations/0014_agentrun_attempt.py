"""Agent runs count their attempts: a run whose worker was lost mid-run is started again as a
new attempt (agents/runs/executor.py, decision on recovery in docs/decisions.md). A small integer with a
constant default: instant in PostgreSQL."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0013_usage_ledger_truth"),
    ]

    operations = [
        migrations.AddField(
            model_name="agentrun",
            name="attempt",
            field=models.PositiveSmallIntegerField(
                default=0,
                help_text="Attempts started; more than one means a worker was lost mid-run and "
                "the run was started again (agents/runs/executor.py).",
            ),
        ),
    ]
