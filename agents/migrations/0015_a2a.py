from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0014_agentrun_attempt"),
    ]

    operations = [
        migrations.AddField(
            model_name="agent",
            name="a2a_exposed",
            field=models.BooleanField(default=False),
        ),
        migrations.AlterField(
            model_name="agentrun",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("succeeded", "Succeeded"),
                    ("failed", "Failed"),
                    ("canceled", "Canceled"),
                ],
                default="queued",
                max_length=16,
            ),
        ),
    ]
