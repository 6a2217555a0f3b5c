"""REST URLs of the model lifecycle (under /api/)."""
from django.urls import path

from . import apis, experiment_apis, model_settings_apis

urlpatterns = [
    path("projects/<int:project_id>/retrain", apis.RetrainApi.as_view(), name="api-retrain"),
    path("projects/<int:project_id>/runs", apis.TrainingRunListApi.as_view(), name="api-runs"),
    path("projects/<int:project_id>/model-versions", apis.ModelVersionListApi.as_view(), name="api-model-versions"),
    path(
        "projects/<int:project_id>/model-versions/<int:number>/rollback",
        apis.ModelVersionSwapApi.as_view(action="rollback"), name="api-model-version-rollback",
    ),
    path(
        "projects/<int:project_id>/model-versions/<int:number>/promote",
        apis.ModelVersionSwapApi.as_view(action="promote"), name="api-model-version-promote",
    ),
    path("projects/<int:project_id>/model-settings", model_settings_apis.ModelSettingsApi.as_view(),
         name="api-model-settings"),
    path("projects/<int:project_id>/predict", experiment_apis.PredictApi.as_view(), name="api-predict"),
    path(
        "projects/<int:project_id>/predictions/<int:prediction_id>/feedback",
        experiment_apis.PredictionFeedbackApi.as_view(), name="api-prediction-feedback",
    ),
    path("projects/<int:project_id>/experiments", experiment_apis.ExperimentListApi.as_view(), name="api-experiments"),
    path(
        "projects/<int:project_id>/experiments/<int:experiment_id>",
        experiment_apis.ExperimentDetailApi.as_view(), name="api-experiment",
    ),
    path(
        "projects/<int:project_id>/experiments/<int:experiment_id>/stop",
        experiment_apis.ExperimentStopApi.as_view(), name="api-experiment-stop",
    ),
]
