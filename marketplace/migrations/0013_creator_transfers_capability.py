"""CreatorAccount.transfers_active: Stripe's `transfers` capability, what "onboarded" needs
(decision 135). Rows stored before it take `charges_enabled` (under the old meaning an onboarded
account had every capability active); the next `account.updated` stores what Stripe says."""

from typing import Any

from django.db import migrations, models


def from_charges_enabled(apps: Any, schema_editor: Any) -> None:
    creator_account = apps.get_model("marketplace", "CreatorAccount")
    creator_account.objects.filter(charges_enabled=True).update(transfers_active=True)


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0012_refund_failed"),
    ]

    operations = [
        migrations.AddField(
            model_name="creatoraccount",
            name="transfers_active",
            field=models.BooleanField(
                default=False,
                help_text="Stripe's `transfers` capability is active: we may pay it.",
            ),
        ),
        migrations.RunPython(from_charges_enabled, migrations.RunPython.noop),
    ]
