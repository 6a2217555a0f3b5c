"""Page URLs of the annotations app."""
from django.urls import path

from . import browse_views, label_views, member_views, project_views, review_views, views
from .exports import views as export_views
from .imports import views as import_views

urlpatterns = [
    path("", views.project_list, name="home"),
    path("account/api-token", views.api_token, name="api-token"),
    path("projects/<int:project_id>/", views.project_detail, name="project-detail"),
    path("projects/<int:project_id>/clients/", views.project_clients, name="project-clients"),
    path("items/<int:item_id>/<str:variant>", views.item_media, name="item-media"),
    path("projects/<int:project_id>/import", import_views.project_import, name="project-import"),
    path("projects/<int:project_id>/export", export_views.project_export_page, name="project-export"),
    path("imports/<int:job_id>/panel", import_views.import_job_panel, name="import-job-panel"),
    path("projects/<int:project_id>/label", label_views.label_page, name="label"),
    path("projects/<int:project_id>/label/next", label_views.label_next, name="label-next"),
    path("projects/<int:project_id>/label/undo", label_views.label_undo, name="label-undo"),
    path("projects/<int:project_id>/label/<uuid:lease_id>/submit", label_views.label_submit, name="label-submit"),
    path("projects/<int:project_id>/label/<uuid:lease_id>/skip", label_views.label_skip, name="label-skip"),
    path("projects/<int:project_id>/label/<uuid:lease_id>/renew", label_views.label_renew, name="label-renew"),
    path("projects/<int:project_id>/label/<uuid:lease_id>/release", label_views.label_release, name="label-release"),
]

# The review workflow (annotations/review_views.py).
urlpatterns += [
    path("projects/<int:project_id>/review/", review_views.review_page, name="review"),
    path("projects/<int:project_id>/review/items/<int:item_id>", review_views.review_item, name="review-item"),
    path("projects/<int:project_id>/review/items/<int:item_id>/resolve", review_views.review_resolve,
         name="review-resolve"),
    path("projects/<int:project_id>/review/annotations/<int:annotation_id>/correct", review_views.review_correct,
         name="review-correct"),
    path("projects/<int:project_id>/agreement/", review_views.agreement_page, name="agreement"),
]

# The team: members and invitations (annotations/member_views.py).
urlpatterns += [
    path("projects/<int:project_id>/members/", member_views.project_members, name="project-members"),
    path("invitations/<str:token>/", member_views.invitation_accept, name="invitation-accept"),
]

# Making and setting up a project (annotations/project_views.py).
urlpatterns += [
    path("projects/new", project_views.project_new, name="project-new"),
    path("projects/<int:project_id>/settings", project_views.project_settings, name="project-settings"),
    path("projects/<int:project_id>/settings/labels", project_views.project_label_add, name="project-label-add"),
    path("projects/<int:project_id>/settings/labels/<int:label_id>", project_views.project_label_change,
         name="project-label-change"),
]

# The items browser, one item's page and an expert's own labels (annotations/browse_views.py).
urlpatterns += [
    path("projects/<int:project_id>/items", browse_views.items_page, name="project-items"),
    path("projects/<int:project_id>/items/<int:item_id>", browse_views.item_page, name="project-item"),
    path("projects/<int:project_id>/items/<int:item_id>/correct", browse_views.item_correct,
         name="project-item-correct"),
    path("projects/<int:project_id>/my-labels", browse_views.my_labels_page, name="my-labels"),
    path("projects/<int:project_id>/my-labels/<int:annotation_id>/change", browse_views.my_label_change,
         name="my-label-change"),
]
