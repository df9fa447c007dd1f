"""Production: secure by default, every secret from the environment, JSON logs."""

from config.settings.base import *  # noqa: F403
from config.settings.base import LOGGING, STORAGES, env, secret

DEBUG = False
SECRET_KEY = secret("DJANGO_SECRET_KEY")  # required: no default
if not SECRET_KEY:
    raise RuntimeError("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must be set in production")
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

# Load balancers probe health over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
WHITENOISE_USE_FINDERS = False
WHITENOISE_AUTOREFRESH = False

# Sign-up needs confirmation emails, and invitation links must not end up in logs.
if not env.str("EMAIL_URL", default="") and "console" in env.str(
    "EMAIL_BACKEND", default="console"
):
    raise RuntimeError(
        "Set EMAIL_URL (e.g. smtp+tls://user:pass@smtp.example.com:587) in production"
    )

STORAGES["staticfiles"] = {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}
LOGGING["handlers"]["console"]["formatter"] = env.str("LOG_FORMAT", default="json")
