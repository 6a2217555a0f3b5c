"""Page URLs of the learner app."""
from django.urls import path

from . import model_settings_views, views

urlpatterns = [
    path("projects/<int:project_id>/models/", views.project_models, name="project-models"),
    path("projects/<int:project_id>/models/retrain", views.project_retrain, name="project-retrain"),
    path("projects/<int:project_id>/models/compare", views.model_versions_compare, name="model-versions-compare"),
    path("projects/<int:project_id>/models/<int:number>/", views.model_version_detail, name="model-version-detail"),
    path("projects/<int:project_id>/models/<int:number>/rollback", views.model_version_swap,
         {"action": "rollback"}, name="model-version-rollback"),
    path("projects/<int:project_id>/models/<int:number>/promote", views.model_version_swap,
         {"action": "promote"}, name="model-version-promote"),
    path("projects/<int:project_id>/model-settings", model_settings_views.project_model_settings,
         name="project-model-settings"),
    path("projects/<int:project_id>/dashboard/", views.project_dashboard, name="project-dashboard"),
    path("projects/<int:project_id>/models/status", views.project_model_status, name="project-model-status"),
    path("projects/<int:project_id>/dashboard/jobs", views.project_dashboard_jobs, name="project-dashboard-jobs"),
    path("projects/<int:project_id>/experiments/", views.project_experiments, name="project-experiments"),
    path("projects/<int:project_id>/experiments/start", views.experiment_start, name="experiment-start"),
    path("projects/<int:project_id>/experiments/<int:experiment_id>/stop", views.experiment_stop,
         name="experiment-stop"),
]
