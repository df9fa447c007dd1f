from django.urls import path

from agents.embed import api

urlpatterns = [
    path(
        "shares/<int:share_id>/end-user-tokens/",
        api.EndUserTokenApi.as_view(),
        name="api-share-end-user-tokens",
    ),
    path(
        "public/shares/<slug:space>/<str:share_key>/visitor-tokens/",
        api.AnonymousTokenApi.as_view(),
        name="api-share-visitor-tokens",
    ),
    path(
        "public/shares/<slug:space>/<str:share_key>/conversation/",
        api.VisitorConversationApi.as_view(),
        name="api-share-visitor-conversation",
    ),
]
