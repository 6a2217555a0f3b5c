"""REST endpoints of the review workflow: the review queue, resolve, correct, gold items and agreement."""
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labelhub.api import ID_MAX

from . import selectors, services
from .models import Item, Project
from .selectors.labels import majority_label
from .services.review import NOTE_MAX


class LabelChoiceInputSerializer(serializers.Serializer):
    """A label of the project by id or name, or ``clear`` to remove the one set."""

    label_id = serializers.IntegerField(required=False, min_value=1, max_value=ID_MAX)
    label = serializers.CharField(required=False, max_length=100, help_text="The label's name (or send label_id).")
    clear = serializers.BooleanField(required=False, default=False, help_text="Remove the label set before.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        chosen = "label_id" in attrs or "label" in attrs
        if attrs["clear"] and chosen:
            raise serializers.ValidationError("Send either a label or clear, not both.")
        if not attrs["clear"] and not chosen:
            raise serializers.ValidationError("Send label_id or label (the label's name), or clear: true.")
        return attrs


def _label_choice(project: Project, data: dict[str, Any]):
    if data["clear"]:
        return None
    return selectors.project_label_get(project, label_id=data.get("label_id"), name=data.get("label"))


@extend_schema_serializer(component_name="ReviewAnnotation")
class ReviewAnnotationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    annotator = serializers.CharField(source="annotator.get_username")
    label_id = serializers.IntegerField()
    label = serializers.CharField(source="label.name")
    predicted_label_id = serializers.IntegerField(allow_null=True)
    predicted_confidence = serializers.FloatField(allow_null=True)
    model_version = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="ReviewSkip")
class ReviewSkipOutputSerializer(serializers.Serializer):
    expert = serializers.CharField(source="user.get_username")
    reason = serializers.CharField(source="skip_reason", help_text="Empty when the expert gave no reason.")
    skipped_at = serializers.DateTimeField(source="created_at", help_text="When the item was served to them.")


@extend_schema_serializer(component_name="ReviewItem")
class ReviewItemOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    experts_disagree = serializers.BooleanField()
    model_disagrees = serializers.BooleanField()
    annotations = ReviewAnnotationOutputSerializer(many=True, source="annotations.all")
    majority_label_id = serializers.SerializerMethodField()
    resolved_label_id = serializers.IntegerField(allow_null=True)
    resolved_by = serializers.CharField(source="resolved_by.get_username", allow_null=True, default=None)
    resolved_at = serializers.DateTimeField(allow_null=True)
    skips = ReviewSkipOutputSerializer(many=True, help_text="Experts who skipped the item, with their reasons.")

    def get_majority_label_id(self, item: Item) -> int | None:
        votes = [(a.pk, a.label_id) for a in item.annotations.all()]
        return majority_label(votes) if votes else None


class ReviewCursorPagination(CursorPagination):
    ordering = "id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class ReviewItemListApi(APIView):
    """The project's review queue (reviewers): items where experts disagree or disagree with a confident model.

    ``filter``: ``queue`` (default: either reason, unresolved), ``disagreement``, ``model`` or
    ``resolved``. Cursor-paginated, oldest item first.
    """

    pagination_class = ReviewCursorPagination

    @extend_schema(
        parameters=[
            OpenApiParameter("filter", str, enum=list(selectors.REVIEW_FILTERS), required=False),
            OpenApiParameter("cursor", str, required=False),
            OpenApiParameter("page_size", int, required=False),
        ],
        responses=ReviewItemOutputSerializer(many=True),
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id, min_role="reviewer")
        items = selectors.review_items(project, kind=request.query_params.get("filter", "queue"))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(items, request, view=self)
        return paginator.get_paginated_response(ReviewItemOutputSerializer(page, many=True).data)


@extend_schema_serializer(component_name="ItemResolution")
class ResolutionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    resolved_label_id = serializers.IntegerField(allow_null=True)
    resolved_label = serializers.CharField(source="resolved_label.name", allow_null=True, default=None)
    resolved_by = serializers.CharField(source="resolved_by.get_username", allow_null=True, default=None)
    resolved_at = serializers.DateTimeField(allow_null=True)


class ItemResolveApi(APIView):
    """Set the final label of an item (reviewers); training and export use it over the experts' majority."""

    @extend_schema(request=LabelChoiceInputSerializer, responses=ResolutionOutputSerializer)
    def post(self, request: Request, item_id: int) -> Response:
        item = selectors.review_item_get_for_user(request.user, item_id)
        serializer = LabelChoiceInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        label = _label_choice(item.project, serializer.validated_data)
        item = services.item_resolve(item=item, label=label, user=request.user)
        return Response(ResolutionOutputSerializer(item).data)


class AnnotationCorrectApi(APIView):
    """Change an expert's label (reviewers); the change is recorded with who, when and the label before."""

    @extend_schema_serializer(component_name="AnnotationCorrect")
    class InputSerializer(serializers.Serializer):
        label_id = serializers.IntegerField(required=False, min_value=1, max_value=ID_MAX)
        label = serializers.CharField(required=False, max_length=100, help_text="The label's name (or send label_id).")
        note = serializers.CharField(required=False, allow_blank=True, max_length=NOTE_MAX)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if "label_id" not in attrs and "label" not in attrs:
                raise serializers.ValidationError("Send label_id or label (the label's name).")
            return attrs

    @extend_schema_serializer(component_name="AnnotationCorrection")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        annotation_id = serializers.IntegerField()
        previous_label_id = serializers.IntegerField()
        previous_label = serializers.CharField(source="previous_label.name")
        new_label_id = serializers.IntegerField()
        new_label = serializers.CharField(source="new_label.name")
        corrected_by = serializers.CharField(source="corrected_by.get_username", allow_null=True, default=None)
        corrected_at = serializers.DateTimeField()
        note = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request, annotation_id: int) -> Response:
        annotation = selectors.review_annotation_get_for_user(request.user, annotation_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        label = selectors.project_label_get(annotation.item.project, label_id=data.get("label_id"), name=data.get("label"))
        correction = services.annotation_correct(
            annotation=annotation, label=label, user=request.user, note=data.get("note", "")
        )
        return Response(self.OutputSerializer(correction).data, status=status.HTTP_201_CREATED)


class ItemGoldApi(APIView):
    """Make an item a gold item with a known label, or clear it (managers); experts cannot tell gold items apart."""

    @extend_schema_serializer(component_name="ItemGold")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        gold_label_id = serializers.IntegerField(allow_null=True)
        gold_label = serializers.CharField(source="gold_label.name", allow_null=True, default=None)

    @extend_schema(request=LabelChoiceInputSerializer, responses=OutputSerializer)
    def post(self, request: Request, item_id: int) -> Response:
        item = selectors.review_item_get_for_user(request.user, item_id, min_role="manager")
        serializer = LabelChoiceInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        label = _label_choice(item.project, serializer.validated_data)
        item = services.item_gold_set(item=item, label=label)
        return Response(self.OutputSerializer(item).data)


@extend_schema_serializer(component_name="AgreementPair")
class AgreementPairOutputSerializer(serializers.Serializer):
    experts = serializers.ListField(child=serializers.IntegerField())
    usernames = serializers.ListField(child=serializers.CharField())
    items = serializers.IntegerField(help_text="Items both experts labeled.")
    agreement = serializers.FloatField(allow_null=True, help_text="Share of those items with the same label.")
    kappa = serializers.FloatField(allow_null=True, help_text="Cohen's kappa; null when undefined.")
    kappa_interval = serializers.ListField(child=serializers.FloatField(), allow_null=True,
                                           help_text="95 % bootstrap interval over items.")


@extend_schema_serializer(component_name="AgreementExpert")
class AgreementExpertOutputSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    items = serializers.IntegerField(help_text="Items this expert labeled that others labeled too.")
    agreement = serializers.FloatField(allow_null=True, help_text="Share agreeing with the others' majority.")
    kappa = serializers.FloatField(allow_null=True, help_text="Cohen's kappa against the others' majority.")
    kappa_interval = serializers.ListField(child=serializers.FloatField(), allow_null=True)


@extend_schema_serializer(component_name="GoldAccuracy")
class GoldAccuracyOutputSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    gold_items = serializers.IntegerField()
    correct = serializers.IntegerField()
    accuracy = serializers.FloatField()
    interval = serializers.ListField(child=serializers.FloatField(), help_text="95 % Wilson interval.")


class ProjectAgreementApi(APIView):
    """Agreement between the project's experts (reviewers): Krippendorff's alpha, kappa per expert and per pair,
    and each expert's accuracy on gold items, with 95 % intervals."""

    @extend_schema_serializer(component_name="ProjectAgreement")
    class OutputSerializer(serializers.Serializer):
        items = serializers.IntegerField(help_text="Items labeled by two or more experts.")
        experts = serializers.ListField(child=serializers.DictField())
        percent_agreement = serializers.FloatField(allow_null=True, help_text="Share of label pairs that agree.")
        alpha = serializers.FloatField(allow_null=True, help_text="Krippendorff's nominal alpha.")
        alpha_interval = serializers.ListField(child=serializers.FloatField(), allow_null=True,
                                               help_text="95 % bootstrap interval over items.")
        per_expert = AgreementExpertOutputSerializer(many=True)
        pairwise = AgreementPairOutputSerializer(many=True)
        gold = GoldAccuracyOutputSerializer(many=True)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id, min_role="reviewer")
        result = {**selectors.project_agreement(project), "gold": selectors.gold_accuracy(project)}
        return Response(self.OutputSerializer(result).data)
