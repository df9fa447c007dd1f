from django.urls import URLPattern, path

from agents.chat import views

urlpatterns: list[URLPattern] = [
    path("", views.conversation_list, name="conversation_list"),
    path("new/", views.conversation_new, name="conversation_new"),
    path("<int:conversation_id>/", views.conversation_detail, name="conversation_detail"),
    path("<int:conversation_id>/send/", views.conversation_send, name="conversation_send"),
    path("<int:conversation_id>/delete/", views.conversation_delete, name="conversation_delete"),
    path(
        "<int:conversation_id>/turns/<int:turn_id>/cache-wrong/",
        views.turn_cache_wrong,
        name="turn_cache_wrong",
    ),
]
