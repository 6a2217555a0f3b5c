"""REST URLs (under /api/)."""
from django.urls import path

from . import apis

urlpatterns = [
    path("projects/<int:project_id>/imports", apis.ImportJobCreateApi.as_view(), name="api-import-create"),
    path("imports/<int:job_id>", apis.ImportJobDetailApi.as_view(), name="api-import-detail"),
]
