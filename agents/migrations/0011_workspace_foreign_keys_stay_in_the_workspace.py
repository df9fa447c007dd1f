"""Workspace tables keep no foreign-key constraints into the public schema.

Each such constraint puts two referential-integrity triggers on the public table it points at
(accounts_user, auth_group, auth_permission, django_content_type: django-guardian's object
permissions point at all four). At 3,800 workspaces accounts_user carried 15,190 triggers: every
new workspace rebuilt that trigger list (provisioning slowed from 0.10 s to 0.30 s), and deleting
a user would check a table in every workspace. The columns stay; the platform's own workspace
models already keep users as plain ids (`created_by_id`). See docs/decisions.md §38.
"""

from django.db import migrations

DROP_CROSS_SCHEMA_FOREIGN_KEYS = """
DO $$
DECLARE fk record;
BEGIN
    FOR fk IN
        SELECT con.conname, cl.relname
          FROM pg_constraint con
          JOIN pg_class cl ON cl.oid = con.conrelid
          JOIN pg_class ref ON ref.oid = con.confrelid
         WHERE con.contype = 'f'
           AND cl.relnamespace = current_schema()::regnamespace
           AND ref.relnamespace <> current_schema()::regnamespace
         ORDER BY ref.relname, cl.relname, con.conname  -- one lock order in every schema
    LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', fk.relname, fk.conname);
    END LOOP;
END $$;
"""


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0010_response_cache_tiers"),
        ("guardian", "0003_remove_groupobjectpermission_guardian_gr_content_ae6aec_idx_and_more"),
    ]

    operations = [migrations.RunSQL(DROP_CROSS_SCHEMA_FOREIGN_KEYS, migrations.RunSQL.noop)]
