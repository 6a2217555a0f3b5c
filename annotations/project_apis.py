"""REST endpoints of projects, labels, items and annotations: one view per operation."""
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labelhub.api import CursorPagination, NotFound, query_validated

from . import selectors, services
from .apis import QueueItemOutputSerializer
from .models import Annotation, Item, Label, Project

# Settings a manager may change; the kind and the feature columns are fixed by the project's data.
PROJECT_SETTINGS = [
    "name", "instructions", "query_strategy", "audit_share", "overlap", "lease_ttl_seconds", "show_suggestions",
    "shown_metadata_fields",
    "retrain_every_n_labels", "retrain_interval_minutes", "degradation_window", "degradation_floor",
    "degradation_margin", "drift_enabled", "drift_threshold", "promotion_rule", "gate_margin", "gate_alpha", "gate_min_gain", "gate_min_audit",
    "gate_min_audit_first", "gate_max_recall_drop",
]


# Projects


@extend_schema_serializer(component_name="Project")
class ProjectOutputSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField(
        help_text="Your role: annotator, reviewer, manager, client (an API client) or admin (staff).")

    class Meta:
        model = Project
        fields = ["id", "slug", "kind", "feature_names", *PROJECT_SETTINGS, "role", "created_at", "updated_at"]

    def get_role(self, project: Project) -> str | None:
        role = getattr(project, "role", None)
        if role is None and "user" in self.context:
            role = selectors.membership_role(self.context["user"], project)
        return role


class ProjectListApi(APIView):
    """The projects you belong to (all of them for staff); staff (or users allowed to) create one with POST."""

    @extend_schema_serializer(component_name="ProjectCreate")
    class InputSerializer(serializers.ModelSerializer):
        slug = serializers.SlugField(max_length=100, required=False, allow_blank=True,
                                     help_text="Left out: derived from the name and made unique (chest-x-rays-2).")

        class Meta:
            model = Project
            fields = ["name", "slug", "kind", *PROJECT_SETTINGS[1:]]

    @extend_schema(responses=ProjectOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        projects = selectors.project_list_with_role(request.user)
        return Response(ProjectOutputSerializer(projects, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: ProjectOutputSerializer})
    def post(self, request: Request) -> Response:
        if not services.user_can_create_projects(request.user):
            return Response({"detail": "Only staff, or users allowed to create projects, create projects."},
                            status=status.HTTP_403_FORBIDDEN)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = services.project_create(user=request.user, **serializer.validated_data)
        return Response(
            ProjectOutputSerializer(project, context={"user": request.user}).data, status=status.HTTP_201_CREATED
        )


class ProjectDetailApi(APIView):
    """One project and its settings (members); managers change settings with PATCH."""

    @extend_schema_serializer(component_name="ProjectUpdate")
    class InputSerializer(serializers.ModelSerializer):
        class Meta:
            model = Project
            fields = PROJECT_SETTINGS

    @extend_schema(responses=ProjectOutputSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id)
        return Response(ProjectOutputSerializer(project, context={"user": request.user}).data)

    @extend_schema(request=InputSerializer, responses=ProjectOutputSerializer)
    def patch(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id, min_role="manager")
        serializer = self.InputSerializer(project, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        project = services.project_update(project=project, **serializer.validated_data)
        return Response(ProjectOutputSerializer(project, context={"user": request.user}).data)


# Labels


@extend_schema_serializer(component_name="Label")
class LabelOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Label
        fields = ["id", "name", "shortcut", "color", "order"]


class LabelInputSerializer(serializers.ModelSerializer):
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False, help_text="Hex colour, e.g. #4c78a8.")

    class Meta:
        model = Label
        fields = ["name", "shortcut", "color", "order"]


class LabelListApi(APIView):
    """The project's labels in display order (members); managers add one with POST."""

    @extend_schema_serializer(component_name="LabelCreate")
    class InputSerializer(LabelInputSerializer):
        pass

    @extend_schema(responses=LabelOutputSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id)
        return Response(LabelOutputSerializer(selectors.project_labels(project), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: LabelOutputSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id, min_role="manager")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        label = services.label_create(project=project, **serializer.validated_data)
        return Response(LabelOutputSerializer(label).data, status=status.HTTP_201_CREATED)


class LabelUpdateApi(APIView):
    """Rename, recolour, reorder or re-key a label (managers)."""

    @extend_schema_serializer(component_name="LabelUpdate")
    class InputSerializer(LabelInputSerializer):
        pass

    @extend_schema(request=InputSerializer, responses=LabelOutputSerializer)
    def patch(self, request: Request, project_id: int, label_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id, min_role="manager")
        label = selectors.label_get(project, label_id)
        if label is None:
            raise NotFound("Label not found.")
        serializer = self.InputSerializer(label, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        label = services.label_update(label=label, **serializer.validated_data)
        return Response(LabelOutputSerializer(label).data)


# Items and annotations: cursor-paginated (``next``/``previous`` links), so a client can walk millions of rows.


@extend_schema_serializer(component_name="Item")
class ItemOutputSerializer(QueueItemOutputSerializer):
    label_count = serializers.IntegerField(help_text="Annotations stored for this item.")
    resolved_label = serializers.CharField(allow_null=True, help_text="A reviewer's final label, if any.")
    created_at = serializers.DateTimeField()

    def to_representation(self, item: Item) -> dict[str, Any]:
        data = super().to_representation(item)
        data["label_count"] = item.label_count
        data["resolved_label"] = item.resolved_label.name if item.resolved_label_id else None
        data["created_at"] = serializers.DateTimeField().to_representation(item.created_at)
        return data


class ItemListApi(APIView):
    """The project's items, by id, a page at a time (reviewers and up)."""

    pagination_class = CursorPagination

    @extend_schema(responses=ItemOutputSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id, min_role="reviewer")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.item_list(project), request, view=self)
        return paginator.get_paginated_response(ItemOutputSerializer(page, many=True, context={"project": project}).data)


@extend_schema_serializer(component_name="Annotation")
class AnnotationOutputSerializer(serializers.ModelSerializer):
    external_id = serializers.CharField(source="item.external_id")
    label = serializers.CharField(source="label.name")
    annotator = serializers.CharField(source="annotator.get_username")
    predicted_label = serializers.CharField(source="predicted_label.name", allow_null=True, default=None)
    reviewed = serializers.SerializerMethodField(help_text="Whether a reviewer set the item's final label.")
    resolved_label = serializers.CharField(source="item.resolved_label.name", allow_null=True, default=None)

    class Meta:
        model = Annotation
        fields = ["id", "item_id", "external_id", "label_id", "label", "annotator", "source", "is_audit",
                  "created_at", "updated_at", "time_spent_ms", "model_version", "predicted_label",
                  "predicted_confidence", "reviewed", "resolved_label"]

    def get_reviewed(self, annotation: Annotation) -> bool:
        return annotation.item.resolved_label_id is not None


class AnnotationListApi(APIView):
    """The project's annotations, by id, a page at a time, filtered (reviewers and up)."""

    pagination_class = CursorPagination

    @extend_schema_serializer(component_name="AnnotationFilter")
    class FilterSerializer(serializers.Serializer):
        updated_since = serializers.DateTimeField(required=False, help_text="Annotations changed at or after this.")
        annotator = serializers.CharField(required=False, max_length=150, help_text="The annotator's username.")
        label = serializers.CharField(required=False, max_length=100, help_text="The label's name.")
        reviewed = serializers.BooleanField(required=False, help_text="Whether a reviewer set the item's final label.")
        audit = serializers.BooleanField(required=False, help_text="Audit labels (random draws) only, or none.")

    @extend_schema(parameters=[FilterSerializer], responses=AnnotationOutputSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id, min_role="reviewer")
        filters = query_validated(request, self.FilterSerializer)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.annotation_list(project, **filters), request, view=self)
        return paginator.get_paginated_response(AnnotationOutputSerializer(page, many=True).data)
