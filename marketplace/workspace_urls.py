"""A workspace's marketplace pages under /w/<slug>/marketplace/."""

from django.urls import path

from marketplace import earnings_views
from marketplace import workspace_views as views

urlpatterns = [
    path("", views.marketplace_workspace, name="marketplace_workspace"),
    path("publish/", views.marketplace_publish, name="marketplace_publish"),
    path("publish/fee/", views.publish_fee, name="marketplace_publish_fee"),
    path("payouts/setup/", views.payouts_setup, name="marketplace_payouts_setup"),
    path("payouts/refresh/", views.payouts_refresh, name="marketplace_payouts_refresh"),
    path("payouts/return/", views.payouts_return, name="marketplace_payouts_return"),
    path("installs/<int:install_id>/upgrade/", views.install_upgrade, name="marketplace_upgrade"),
    path(
        "installs/<int:install_id>/auto-upgrade/",
        views.install_auto_upgrade,
        name="marketplace_auto_upgrade",
    ),
    path(
        "installs/<int:install_id>/uninstall/",
        views.install_uninstall,
        name="marketplace_uninstall",
    ),
    path(
        "purchases/<int:purchase_id>/cancel/",
        views.purchase_cancel,
        name="marketplace_purchase_cancel",
    ),
    path("reviews/<int:review_id>/reply/", views.review_reply, name="marketplace_reply"),
    path("earnings/", earnings_views.earnings_page, name="marketplace_earnings"),
    path(
        "earnings/statement.csv",
        earnings_views.earnings_statement,
        name="marketplace_earnings_statement",
    ),
]
