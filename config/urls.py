from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts import views as accounts_views
from core import views as core_views

handler500 = "core.views.server_error"  # a database or Redis outage answers 503
handler400 = "core.views.bad_request"  # a body over the size limit answers 413
handler404 = "core.views.not_found"  # the API's envelope under /api/

admin.site.site_header = "Agent Market back-office"
admin.site.site_title = "Agent Market admin"
admin.site.index_title = "Operations"

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    # Before admin's own: its login view checks passwords with no rate limit; this one sends
    # everyone to allauth's sign-in (rate-limited, audited).
    path("admin/login/", accounts_views.admin_login, name="admin_login"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include("tenants.api.urls")),
    path("api/v1/", include("agents.api.urls")),
    path("api/v1/", include("workflows.api.urls")),
    path("api/v1/", include("marketplace.api.urls")),
    # Inbound webhooks (HMAC-signed, no session): workflow triggers and webhook-wait steps.
    path("hooks/workflows/", include("workflows.hook_urls")),
    path("marketplace/", include("marketplace.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger's start-up script as a file (no inline script, for the CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("tenants.urls")),
]
