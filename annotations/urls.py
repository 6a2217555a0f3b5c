"""Page URLs of the annotations app."""
from django.urls import path

from . import views

urlpatterns = [
    path("", views.project_list, name="home"),
    path("projects/<int:project_id>/", views.project_detail, name="project-detail"),
    path("items/<int:item_id>/<str:variant>", views.item_media, name="item-media"),
    path("projects/<int:project_id>/import", views.project_import, name="project-import"),
    path("imports/<int:job_id>/panel", views.import_job_panel, name="import-job-panel"),
]
