"""Settings for the benchmarks: the test settings (with the `tests.probe` tenant app), pointed
at a throw-away database and a key prefix of their own.

    BENCH_DATABASE_NAME       the database to use (required; the bench script creates it)
    BENCH_PROBE_MIGRATIONS    optional module for `probe`'s migrations (a temporary copy the
                              bench adds migrations to without touching tracked files)
"""

import os

from config.settings.test import *  # noqa: F403
from config.settings.test import CACHES, CHANNEL_LAYERS, DATABASES, LOGGING, MIGRATION_MODULES

DATABASES["default"]["NAME"] = os.environ["BENCH_DATABASE_NAME"]
CACHES["default"]["KEY_PREFIX"] = "bench"
CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "bench"
CELERY_TASK_DEFAULT_QUEUE = "bench"

if os.environ.get("BENCH_PROBE_MIGRATIONS"):
    MIGRATION_MODULES = {**MIGRATION_MODULES, "probe": os.environ["BENCH_PROBE_MIGRATIONS"]}

# One audit line per created workspace would bury the progress output.
LOGGING["loggers"]["audit"] = {"level": "WARNING"}
# …and one line per HTTP request would bury the gateway bench's.
LOGGING["loggers"]["httpx2"] = {"level": "WARNING"}
# …and the billing bench's, one line per Stripe request.
LOGGING["loggers"]["stripe"] = {"level": "WARNING"}
