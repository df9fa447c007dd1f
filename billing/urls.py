"""The workspace's Billing page and its two actions, at /w/<slug>/billing/ (config/urls.py)."""

from django.urls import URLPattern, path

from billing import views

urlpatterns: list[URLPattern] = [
    path("", views.billing, name="billing"),
    path("upgrade/", views.billing_upgrade, name="billing_upgrade"),
    path("payment/", views.billing_portal, name="billing_portal"),
]
