"""The ledger tells the whole truth about every call (docs/gateway.md, decision 41):

- `estimated`: the provider did not report some counts (an OpenAI-compatible server ignoring
  `stream_options.include_usage`, a stream that broke off) and they were estimated locally;
- outcome `pending`: the row is written before the request is sent, so an attempt whose worker
  died while waiting stays visible instead of vanishing;
- purpose `embedding`: embedding calls to a provider are ledger rows too.

Adding a boolean with a constant default is instant in PostgreSQL; existing rows are not
estimated.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0012_agent_name_unique"),
    ]

    operations = [
        migrations.AddField(
            model_name="usagerecord",
            name="estimated",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "The provider did not report every count; the missing ones were estimated."
                ),
            ),
        ),
        migrations.AlterField(
            model_name="usagerecord",
            name="outcome",
            field=models.CharField(
                choices=[
                    ("ok", "Answered"),
                    ("error", "Failed"),
                    ("skipped", "Skipped (circuit open)"),
                    ("cached", "Answered from cache"),
                    ("pending", "Sent, no outcome recorded (in progress or interrupted)"),
                ],
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="usagerecord",
            name="purpose",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "Answer"),
                    ("cache_exact", "Cache hit (exact)"),
                    ("cache_semantic", "Cache hit (semantic)"),
                    ("cache_check", "Check of a semantic cache hit"),
                    ("embedding", "Embedding"),
                ],
                default="",
                help_text=(
                    "Why the row exists: an answer, a cache hit of a tier, a cache check or an "
                    "embedding."
                ),
                max_length=16,
            ),
        ),
    ]
