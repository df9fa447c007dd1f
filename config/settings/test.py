"""Test settings: the same real services, isolated by key prefixes and a fast password hasher."""

import os
import tempfile

# Each test session counts its own metrics (core/metrics.py): a fresh multiprocess directory,
# inherited by the Celery workers the tests start. Before base: it exports the variable.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="agentmarket-metrics-"))

from config.settings.base import *  # noqa: F403
from config.settings.base import (
    CACHES,
    CHANNEL_LAYERS,
    INSTALLED_APPS,
    TENANT_APPS,
)

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CACHES["default"]["KEY_PREFIX"] = "test"
CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "test"
CELERY_TASK_DEFAULT_QUEUE = "test"
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
# Each test's rows are rolled back but Redis is shared: a cached page would outlive its rows.
MARKETPLACE_PAGE_CACHE_SECONDS = 0
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# A tenant app that exists only in tests: a vector(384) column with an HNSW index, foreign keys,
# unique and check constraints -- everything a schema clone must reproduce exactly.
TENANT_APPS = [*TENANT_APPS, "tests.probe"]
INSTALLED_APPS = [*INSTALLED_APPS, "tests.probe"]

# Retries wait milliseconds, not seconds, so the suite stays fast (the arithmetic is the same).
GATEWAY_BACKOFF_BASE_SECONDS = 0.01
GATEWAY_MAX_RETRY_DELAY_SECONDS = 0.5
GATEWAY_TIMEOUT_SECONDS = 2.0
LLM_PLATFORM_KEYS = {"anthropic": "", "openai": ""}
