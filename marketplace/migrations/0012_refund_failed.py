# A refund Stripe refused for good is failed; one staff gave up on is canceled (issue 15 fixes).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0011_auto_upgrade"),
    ]

    operations = [
        migrations.AlterField(
            model_name="refund",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Waiting for Stripe"),
                    ("done", "Refunded"),
                    ("failed", "Refused by Stripe"),
                    ("canceled", "Canceled by staff"),
                ],
                default="pending",
                max_length=16,
            ),
        ),
    ]
