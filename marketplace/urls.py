"""Public marketplace pages under /marketplace/ (anyone, signed in or not)."""

from django.urls import path

from marketplace import views

urlpatterns = [
    path("", views.marketplace_home, name="marketplace"),
    path("l/<slug:slug>/", views.listing_page, name="marketplace_listing"),
    path("l/<slug:slug>/install/", views.listing_install, name="marketplace_install"),
    path("l/<slug:slug>/buy/", views.listing_buy, name="marketplace_buy"),
    path("l/<slug:slug>/review/", views.listing_review, name="marketplace_review"),
    path("l/<slug:slug>/flag/", views.listing_flag, name="marketplace_flag"),
    path("p/<slug:slug>/", views.publisher_page, name="marketplace_publisher"),
]
