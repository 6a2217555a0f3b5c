"""REST URLs of the model lifecycle (under /api/)."""
from django.urls import path

from . import apis

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
]
