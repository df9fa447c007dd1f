from django.urls import URLPattern, path

from agents.embed import views

# Under /w/<slug>/shares/ (owners and admins; the conversations: everyone in the workspace).
urlpatterns: list[URLPattern] = [
    path("", views.share_list, name="share_list"),
    path("<int:share_id>/", views.share_detail, name="share_detail"),
    path("<int:share_id>/regenerate/", views.share_regenerate, name="share_regenerate"),
    path("<int:share_id>/revoke/", views.share_revoke, name="share_revoke"),
    # Visitors' conversations: everyone in the workspace reads them; owners and admins delete.
    path("<int:share_id>/conversations/", views.share_conversations, name="share_conversations"),
    path(
        "<int:share_id>/conversations/<int:conversation_id>/",
        views.share_conversation,
        name="share_conversation",
    ),
    path(
        "<int:share_id>/conversations/<int:conversation_id>/delete/",
        views.share_conversation_delete,
        name="share_conversation_delete",
    ),
]

# Under /s/ (everyone; the key is the secret).
public_patterns: list[URLPattern] = [
    path("<slug:space>/<str:share_key>/", views.share_page, name="share_page"),
    path("<slug:space>/<str:share_key>/frame/", views.share_frame, name="share_frame"),
    path("<slug:space>/<str:share_key>/logo/", views.share_logo, name="share_logo"),
]
