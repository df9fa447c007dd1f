"""The composition root's URL tree: the only URLconf that names every app (docs/decisions.md,
"Layers"). Each app owns its patterns; this file decides where they are mounted."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts import views as accounts_views
from agents.embed import urls as embed_urls
from billing import views as billing_views
from core import views as core_views
from tenants import urls as tenants_urls
from tenants.sso import views as sso_views

handler500 = "core.views.server_error"  # a database or Redis outage answers 503
handler400 = "core.views.bad_request"  # a body over the size limit answers 413
handler404 = "core.views.not_found"  # the API's envelope under /api/

admin.site.site_header = "Agent Market back-office"
admin.site.site_title = "Agent Market admin"
admin.site.index_title = "Operations"

# /w/<slug>/: the workspace's own pages, then each app's.
workspace_patterns: list[URLPattern | URLResolver] = [
    *tenants_urls.workspace_patterns,
    path("settings/data/", include("privacy.workspace_urls")),
    path("agents/", include("agents.urls")),
    path("workflows/", include("workflows.urls")),
    path("knowledge/", include("agents.knowledge.urls")),
    path("conversations/", include("agents.chat.urls")),
    path("shares/", include("agents.embed.urls")),
    path("outbound/", include("agents.outbound.urls")),
    path("mcp-servers/", include("agents.mcp_servers.urls")),
    path("marketplace/", include("marketplace.workspace_urls")),
    path("evals/", include("evals.urls")),
    path("billing/", include("billing.urls")),
    path("a2a/", include("a2a_server.urls")),
    path("", include("agents.workspace_urls")),
]

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("metrics", core_views.metrics_view, name="metrics"),
    # Before admin's own: its login view checks passwords with no rate limit; this one sends
    # everyone to allauth's sign-in (rate-limited, audited).
    path("admin/login/", accounts_views.admin_login, name="admin_login"),
    path("admin/", admin.site.urls),
    path("accounts/sso/", sso_views.sso_start, name="sso_start"),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include("tenants.api.urls")),
    path("api/v1/", include("agents.api.urls")),
    path("api/v1/", include("workflows.api.urls")),
    path("api/v1/", include("evals.api.urls")),
    path("api/v1/", include("marketplace.api.urls")),
    path("api/v1/", include("billing.api.urls")),
    path("api/v1/", include("agents.embed.api_urls")),
    # Shared chats (docs/embed.md): public pages, the key in the URL is the secret.
    path("s/", include(embed_urls.public_patterns)),
    # Inbound webhooks (HMAC-signed, no session): workflow triggers and webhook-wait steps.
    path("hooks/workflows/", include("workflows.hook_urls")),
    # Stripe's webhooks, one URL per endpoint registered by `manage.py billing_webhook_endpoint`:
    # stored and verified with dj-stripe's models, processed on the workers (billing/webhooks.py).
    # Ours shadows dj-stripe's view at the same address, which would process in the request.
    path("stripe/webhook/<uuid:uuid>/", billing_views.stripe_webhook, name="stripe_webhook"),
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
    path("marketplace/", include("marketplace.urls")),
    path("privacy/", include("privacy.urls")),
    path("notifications/", include("notifications.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger's start-up script as a file (no inline script, for the CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("tenants.urls")),
    # Every workspace page: WorkspaceMiddleware checks membership and switches the schema.
    path("w/<slug:workspace_slug>/", include(workspace_patterns)),
]
