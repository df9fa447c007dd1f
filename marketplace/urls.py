"""Public marketplace pages under /marketplace/ (anyone, signed in or not)."""

from django.urls import path

from marketplace import views

urlpatterns = [
    path("", views.marketplace_home, name="marketplace"),
    path("l/<slug:slug>/", views.listing_page, name="marketplace_listing"),
    path("p/<slug:slug>/", views.publisher_page, name="marketplace_publisher"),
]
