from django.db import migrations


class Migration(migrations.Migration):
    """pgvector lives once, in the public schema, where every workspace schema finds it through
    its search_path. Creating it from a tenant app would put it in the first tenant's schema."""

    initial = True
    dependencies: list = []

    operations = [
        migrations.RunSQL(
            "CREATE EXTENSION IF NOT EXISTS vector SCHEMA public",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
