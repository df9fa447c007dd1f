"""Marketplace API under /api/v1/marketplace/ (config/urls.py). Listings are addressed by
slug like the public pages; installs and reviews by id."""

from django.urls import path

from marketplace.api import earnings, views

urlpatterns = [
    path("marketplace/listings/", views.ListingListApi.as_view(), name="api-market-listings"),
    path(
        "marketplace/published/",
        views.MyListingsApi.as_view(),
        name="api-market-published",
    ),
    path(
        "marketplace/listings/<slug:slug>/",
        views.ListingDetailApi.as_view(),
        name="api-market-listing",
    ),
    path(
        "marketplace/listings/<slug:slug>/versions/",
        views.ListingVersionsApi.as_view(),
        name="api-market-listing-versions",
    ),
    path(
        "marketplace/listings/<slug:slug>/reviews/",
        views.ListingReviewsApi.as_view(),
        name="api-market-listing-reviews",
    ),
    path(
        "marketplace/listings/<slug:slug>/flags/",
        views.ListingFlagApi.as_view(),
        name="api-market-listing-flags",
    ),
    path(
        "marketplace/listings/<slug:slug>/install/",
        views.ListingInstallApi.as_view(),
        name="api-market-listing-install",
    ),
    path(
        "marketplace/reviews/<int:review_id>/reply/",
        views.ReviewReplyApi.as_view(),
        name="api-market-review-reply",
    ),
    path("marketplace/installs/", views.InstallListApi.as_view(), name="api-market-installs"),
    path("marketplace/earnings/", earnings.EarningsApi.as_view(), name="api-market-earnings"),
    path("marketplace/payouts/", earnings.PayoutListApi.as_view(), name="api-market-payouts"),
    path(
        "marketplace/installs/<int:install_id>/upgrade/",
        views.InstallUpgradeApi.as_view(),
        name="api-market-install-upgrade",
    ),
    path(
        "marketplace/installs/<int:install_id>/uninstall/",
        views.InstallUninstallApi.as_view(),
        name="api-market-install-uninstall",
    ),
    path("marketplace/purchases/", views.PurchaseListApi.as_view(), name="api-market-purchases"),
    path(
        "marketplace/purchases/<int:purchase_id>/cancel/",
        views.PurchaseCancelApi.as_view(),
        name="api-market-purchase-cancel",
    ),
]
