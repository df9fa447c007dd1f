"""The default plan (Free) and every existing workspace on it: every workspace is on a plan."""

import calendar

from django.db import migrations
from django.utils import timezone


def _month_after(start):
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))


def forwards(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    WorkspacePlan = apps.get_model("billing", "WorkspacePlan")
    Workspace = apps.get_model("tenants", "Workspace")
    free, _ = Plan.objects.get_or_create(
        key="free",
        defaults={
            "name": "Free",
            "description": "For trying the platform: small allowances, no overage.",
            "included_ai_spend_usd": "1.00",
            "runs_per_month": 200,
            "seats": 3,
            "workflows": 5,
            "knowledge_storage_mb": 50,
            "api_requests_per_minute": 60,
            "is_default": not Plan.objects.filter(is_default=True).exists(),
        },
    )
    now = timezone.now()
    for workspace in Workspace.objects.filter(is_template=False).exclude(schema_name="public"):
        WorkspacePlan.objects.get_or_create(
            workspace=workspace,
            defaults={
                "plan": free,
                "status": "active",
                "current_period_start": now,
                "current_period_end": _month_after(now),
            },
        )


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_plans")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
