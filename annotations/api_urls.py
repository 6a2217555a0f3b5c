"""REST URLs (under /api/)."""
from django.urls import path

from . import apis, client_apis, project_apis, review_apis
from .exports import apis as export_apis
from .imports import apis as import_apis

urlpatterns = [
    path("projects/<int:project_id>/imports", import_apis.ImportJobCreateApi.as_view(), name="api-import-create"),
    path("imports/<int:job_id>", import_apis.ImportJobDetailApi.as_view(), name="api-import-detail"),
    path("projects/<int:project_id>/embeddings", import_apis.EmbeddingImportApi.as_view(),
         name="api-embeddings-import"),
    path("projects/<int:project_id>/queue/next", apis.QueueNextApi.as_view(), name="api-queue-next"),
    path("projects/<int:project_id>/queue/progress", apis.QueueProgressApi.as_view(), name="api-queue-progress"),
    path("projects/<int:project_id>/queue/undo", apis.QueueUndoApi.as_view(), name="api-queue-undo"),
    # Any string reaches the view, so that a malformed lease id gets the API's JSON 404.
    path("leases/<str:lease_id>/submit", apis.LeaseSubmitApi.as_view(), name="api-lease-submit"),
    path("leases/<str:lease_id>/skip", apis.LeaseSkipApi.as_view(), name="api-lease-skip"),
    path("leases/<str:lease_id>/release", apis.LeaseReleaseApi.as_view(), name="api-lease-release"),
    path("leases/<str:lease_id>/renew", apis.LeaseRenewApi.as_view(), name="api-lease-renew"),
    path("projects", project_apis.ProjectListApi.as_view(), name="api-projects"),
    path("projects/<int:project_id>", project_apis.ProjectDetailApi.as_view(), name="api-project"),
    path("projects/<int:project_id>/labels", project_apis.LabelListApi.as_view(), name="api-labels"),
    path("projects/<int:project_id>/labels/<int:label_id>", project_apis.LabelUpdateApi.as_view(), name="api-label"),
    path("projects/<int:project_id>/items", project_apis.ItemListApi.as_view(), name="api-items"),
    path("projects/<int:project_id>/annotations", project_apis.AnnotationListApi.as_view(), name="api-annotations"),
    path("projects/<int:project_id>/export", export_apis.ProjectExportApi.as_view(), name="api-project-export"),
    path("projects/<int:project_id>/clients", client_apis.ApiClientListApi.as_view(), name="api-clients"),
    path("projects/<int:project_id>/clients/<int:client_id>", client_apis.ApiClientRemoveApi.as_view(),
         name="api-client"),
    path("projects/<int:project_id>/clients/<int:client_id>/token", client_apis.ApiClientTokenApi.as_view(),
         name="api-client-token"),
]

# The review workflow (annotations/review_apis.py).
urlpatterns += [
    path("projects/<int:project_id>/review/items", review_apis.ReviewItemListApi.as_view(), name="api-review-items"),
    path("projects/<int:project_id>/agreement", review_apis.ProjectAgreementApi.as_view(), name="api-agreement"),
    path("items/<int:item_id>/resolve", review_apis.ItemResolveApi.as_view(), name="api-item-resolve"),
    path("items/<int:item_id>/gold", review_apis.ItemGoldApi.as_view(), name="api-item-gold"),
    path("annotations/<int:annotation_id>/correct", review_apis.AnnotationCorrectApi.as_view(),
         name="api-annotation-correct"),
]
