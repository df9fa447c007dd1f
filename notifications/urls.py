"""A person's inbox under /notifications/ (across every workspace they belong to)."""

from django.urls import path

from notifications import views

urlpatterns = [
    path("", views.inbox, name="notifications"),
    path("badge/", views.badge, name="notifications_badge"),
    path("read-all/", views.mark_all_read, name="notifications_read_all"),
    path("preferences/", views.preferences, name="notification_preferences"),
    path("<int:notification_id>/open/", views.open_notification, name="notification_open"),
    path("<int:notification_id>/read/", views.mark_read, name="notification_read"),
]
