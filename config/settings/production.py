"""Production: secure by default, every secret from the environment, JSON logs.

Fails closed: a missing required variable stops the process at start with an error naming it
(all of them at once), never a fallback to a development default; DEBUG is off and cannot be
turned on. The web and worker entry points (config/asgi.py, wsgi.py, celery.py) load this
module when DJANGO_SETTINGS_MODULE is not set."""

import os

from django.core.exceptions import ImproperlyConfigured

from config.settings.base import *  # noqa: F403
from config.settings.base import LOGGING, STORAGES, env, secret


def _required() -> list[str]:
    """The required variables that are missing, as an operator would set them."""
    missing = []
    if not secret("DJANGO_SECRET_KEY"):
        missing.append("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE)")
    if not env.list("DJANGO_ALLOWED_HOSTS", default=[]):
        missing.append("DJANGO_ALLOWED_HOSTS (e.g. agents.example.com)")
    if not os.environ.get("DATABASE_URL"):
        missing.append("DATABASE_URL (e.g. postgres://user:pass@db:5432/agentmarket)")
    if not os.environ.get("REDIS_URL"):
        missing.append("REDIS_URL (e.g. redis://redis:6379/0)")
    # Sign-up needs confirmation emails, and invitation links must not end up in logs.
    console_email = "console" in env.str("EMAIL_BACKEND", default="console")
    if not env.str("EMAIL_URL", default="") and console_email:
        missing.append("EMAIL_URL (e.g. smtp+tls://user:pass@smtp.example.com:587)")
    return missing


if _missing := _required():
    raise ImproperlyConfigured(
        "Production settings (config.settings.production) need: " + "; ".join(_missing) + ". "
        "See docs/operations.md. For a developer machine, use scripts/dev."
    )
if env.bool("DJANGO_DEBUG", default=False):
    raise ImproperlyConfigured(
        "DJANGO_DEBUG is set, but production settings never run with DEBUG on (it shows "
        "settings and tracebacks to anyone). Unset it, or use scripts/dev on your own machine."
    )

DEBUG = False
SECRET_KEY = secret("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https"
# Staff open /admin/ only with two-factor on (docs/sso.md).
STAFF_REQUIRE_MFA = env.bool("STAFF_REQUIRE_MFA", default=True)

# Load balancers probe health, and Prometheus scrapes, over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
WHITENOISE_USE_FINDERS = False
WHITENOISE_AUTOREFRESH = False

STORAGES["staticfiles"] = {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}
LOGGING["handlers"]["console"]["formatter"] = env.str("LOG_FORMAT", default="json")
