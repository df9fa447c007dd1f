from django.urls import path

from agents import views
from agents.runs import views as run_views

urlpatterns = [
    path("", views.agent_list, name="agent_list"),
    path("card/", views.agent_dashboard_card, name="agent_dashboard_card"),
    path("new/", views.agent_create, name="agent_create"),
    path("runs/", run_views.agent_run_list, name="agent_run_list"),
    path("runs/<int:run_id>/", run_views.agent_run_detail, name="agent_run_detail"),
    path("<int:agent_id>/", views.agent_detail, name="agent_detail"),
    path("<int:agent_id>/archive/", views.agent_archive, name="agent_archive"),
    path(
        "<int:agent_id>/versions/<int:number>/restore/", views.agent_restore, name="agent_restore"
    ),
    path("<int:agent_id>/run/", views.agent_run, name="agent_run"),
    path("<int:agent_id>/runs/<int:run_id>/", views.agent_run_status, name="agent_run_status"),
    path(
        "<int:agent_id>/runs/<int:run_id>/cache-wrong/",
        views.agent_run_cache_wrong,
        name="agent_run_cache_wrong",
    ),
]
