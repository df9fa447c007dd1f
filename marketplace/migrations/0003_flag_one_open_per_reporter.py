"""One open flag per person and listing (issue 12, item 10).

Open duplicates that already exist are resolved first (the oldest report of each person and
listing stays open; the later ones point at it), or the constraint could not be created."""

from django.conf import settings
from django.db import migrations, models
from django.db.models import Count, Min


def resolve_duplicates(apps, schema_editor):
    Flag = apps.get_model("marketplace", "Flag")
    groups = (
        Flag.objects.filter(resolved_at__isnull=True, reporter__isnull=False)
        .values("listing_id", "reporter_id")
        .annotate(n=Count("id"), first=Min("id"))
        .filter(n__gt=1)
    )
    for group in groups:
        later = Flag.objects.filter(
            listing_id=group["listing_id"],
            reporter_id=group["reporter_id"],
            resolved_at__isnull=True,
        ).exclude(pk=group["first"])
        for flag in later:
            flag.resolved_at = flag.created_at
            flag.resolution = f"Duplicate of report #{group['first']} by the same person."
            flag.save(update_fields=["resolved_at", "resolution"])


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0002_listing_embedding_inline"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(resolve_duplicates, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="flag",
            constraint=models.UniqueConstraint(
                condition=models.Q(("resolved_at__isnull", True)),
                fields=("listing", "reporter"),
                name="marketplace_flag_one_open_per_reporter",
            ),
        ),
    ]
