"""The response cache's two tiers (agents/cache/responses.py).

Entries cached under the old key (the whole prompt, one global distance) are dropped: their
keys lack what now decides a hit, and a cache is only ever a saving. Versions that had opted
into the old (semantic) cache keep the semantic tier; the exact tier is on for them too, and
on by default for new versions.
"""

from django.db import migrations, models


def carry_over_opt_in(apps, schema_editor):
    AgentVersion = apps.get_model("agents", "AgentVersion")
    AgentVersion.objects.filter(cache_enabled=True).update(cache_semantic=True)


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0009_agent_listing_version_id"),
    ]

    operations = [
        migrations.RunSQL("DELETE FROM agents_cachedresponse", migrations.RunSQL.noop),
        migrations.RemoveIndex(model_name="cachedresponse", name="cached_response_key"),
        migrations.RemoveField(model_name="cachedresponse", name="prompt_sha256"),
        migrations.AddField(
            model_name="cachedresponse",
            name="question",
            field=models.TextField(default="", help_text="The question as it was asked."),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="cachedresponse",
            name="key_sha256",
            field=models.CharField(
                default="", help_text="Everything that changes the answer.", max_length=64
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="cachedresponse",
            name="context_sha256",
            field=models.CharField(
                default="",
                help_text="The key without the question (semantic candidates share it).",
                max_length=64,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="cachedresponse",
            name="user_id",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="cachedresponse",
            name="embedder",
            field=models.CharField(default="", max_length=40),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="cachedresponse",
            name="prompt",
            field=models.TextField(help_text="The whole prompt, for people reading the cache."),
        ),
        migrations.AddIndex(
            model_name="cachedresponse",
            index=models.Index(fields=["key_sha256"], name="cached_response_exact"),
        ),
        migrations.AddIndex(
            model_name="cachedresponse",
            index=models.Index(fields=["context_sha256", "embedder"], name="cached_response_context"),
        ),
        migrations.AddIndex(
            model_name="cachedresponse",
            index=models.Index(fields=["version"], name="cached_response_version"),
        ),
        migrations.AddField(
            model_name="agentversion",
            name="cache_semantic",
            field=models.BooleanField(
                default=False,
                help_text="Also answer rephrased questions from the cache (embedding distance "
                "plus the near-miss guard).",
            ),
        ),
        migrations.AddField(
            model_name="agentversion",
            name="cache_verify",
            field=models.BooleanField(
                default=False,
                help_text="Ask the agent's model whether a semantic hit answers the new question "
                "before serving it (the check is paid for and booked in the ledger).",
            ),
        ),
        migrations.AddField(
            model_name="agentversion",
            name="cache_per_user",
            field=models.BooleanField(
                default=False,
                help_text="Answers depend on who asks: keep each person's cached answers to them.",
            ),
        ),
        migrations.RunPython(carry_over_opt_in, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="agentversion",
            name="cache_enabled",
            field=models.BooleanField(
                default=True,
                help_text="Answer a question asked again (same words, same context) from the cache.",
            ),
        ),
        migrations.AddField(
            model_name="knowledgebase",
            name="contents_version",
            field=models.PositiveIntegerField(
                default=1, help_text="Goes up whenever its documents change (part of cache keys)."
            ),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="purpose",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "Answer"),
                    ("cache_exact", "Cache hit (exact)"),
                    ("cache_semantic", "Cache hit (semantic)"),
                    ("cache_check", "Check of a semantic cache hit"),
                ],
                default="",
                help_text="Why the row exists: an answer, a cache hit of a tier, or a cache check.",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="agentrun",
            name="cache_entry_id",
            field=models.BigIntegerField(
                blank=True, help_text="The cache entry that answered (while it exists).", null=True
            ),
        ),
        migrations.AddField(
            model_name="agentrun",
            name="cache_reported_at",
            field=models.DateTimeField(
                blank=True, help_text="When someone marked the cached answer as wrong.", null=True
            ),
        ),
        migrations.AddField(
            model_name="conversationturn",
            name="cache_entry_id",
            field=models.BigIntegerField(
                blank=True, help_text="The cache entry that answered (while it exists).", null=True
            ),
        ),
        migrations.AddField(
            model_name="conversationturn",
            name="cache_reported_at",
            field=models.DateTimeField(
                blank=True, help_text="When someone marked the cached answer as wrong.", null=True
            ),
        ),
        migrations.CreateModel(
            name="CacheReport",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("agent_id", models.BigIntegerField(blank=True, db_index=True, null=True)),
                ("version_id", models.BigIntegerField(blank=True, null=True)),
                ("tier", models.CharField(blank=True, choices=[("exact", "Exact"), ("semantic", "Semantic")], max_length=16)),
                ("question", models.TextField(help_text="The question the cached answer was served for.")),
                ("cached_question", models.TextField(blank=True, help_text="The question it was cached for.")),
                ("answer", models.TextField(blank=True)),
                ("run_id", models.BigIntegerField(blank=True, null=True)),
                ("turn_id", models.BigIntegerField(blank=True, null=True)),
                ("reported_by_id", models.BigIntegerField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
            ],
            options={"ordering": ["-created_at", "-id"]},
        ),
    ]
