"""REST endpoints of the annotations app: one view per operation."""
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labelhub.api import ID_MAX

from . import selectors, services
from .models import SKIP_REASON_MAX_CHARS, Item, Lease, Project


# The queue. Responses to annotators never say how an item was drawn (audit or not), nor its priority;
# a withheld suggestion (every audit item's, some others') is null, as for an item the model never scored.


@extend_schema_serializer(component_name="QueueLease")
class LeaseOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    expires_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="QueueItem")
class QueueItemOutputSerializer(serializers.Serializer):
    """An item as the labeling client shows it: its text, numeric row or image, by the project's kind."""

    KIND_FIELDS = {
        Project.Kind.TEXT: ("text",),
        Project.Kind.TABULAR: ("values", "feature_names"),
        Project.Kind.IMAGE: ("image_url",),
    }

    id = serializers.IntegerField()
    external_id = serializers.CharField()
    kind = serializers.CharField(help_text="text, image or tabular; says which of the optional fields are present.")
    text = serializers.CharField(required=False, help_text="Text projects.")
    values = serializers.ListField(child=serializers.FloatField(allow_null=True), required=False, allow_null=True,
                                   help_text="Tabular projects: the row, in feature_names order.")
    feature_names = serializers.ListField(child=serializers.CharField(), required=False, help_text="Tabular projects.")
    image_url = serializers.CharField(required=False, help_text="Image projects.")
    metadata = serializers.JSONField()

    def to_representation(self, item: Item) -> dict[str, Any]:
        return _item_data(item, self.context["project"])


def _item_data(item: Item, project: Project) -> dict[str, Any]:
    data = {"id": item.pk, "external_id": item.external_id, "kind": project.kind}
    for field in QueueItemOutputSerializer.KIND_FIELDS[project.kind]:
        if field == "feature_names":
            data[field] = list(project.feature_names)
        elif field == "image_url":
            data[field] = reverse("item-media", args=[item.pk, "image"])
        else:
            data[field] = getattr(item, field)
    data["metadata"] = item.metadata
    return data


@extend_schema_serializer(component_name="QueueSuggestion")
class SuggestionOutputSerializer(serializers.Serializer):
    label_id = serializers.IntegerField()
    label = serializers.CharField()
    confidence = serializers.FloatField(allow_null=True)


@extend_schema_serializer(component_name="QueueScoringSummary")
class ScoringOutputSerializer(serializers.Serializer):
    model_version = serializers.IntegerField(
        help_text="The live version, whose uncertainty orders the queue and whose predictions are the suggestions "
                  "(0: no model yet, diverse items first)."
    )
    finished_at = serializers.DateTimeField()
    strategy = serializers.CharField()


@extend_schema_serializer(component_name="QueueProgress")
class ProgressOutputSerializer(serializers.Serializer):
    pool = serializers.IntegerField(help_text="Items in the project.")
    labeled = serializers.IntegerField(help_text="Items with at least one label.")
    done = serializers.IntegerField(help_text="Items labeled by as many experts as the overlap asks.")
    mine_today = serializers.IntegerField(help_text="Your labels in this project since local midnight.")
    scoring = ScoringOutputSerializer(allow_null=True, help_text="The scoring the queue serves from, if any.")


@extend_schema_serializer(component_name="QueueServed")
class ServedOutputSerializer(serializers.Serializer):
    """A leased item with the model's suggestion (if the project shows them and this lease does not withhold it);
    progress is its own endpoint."""

    lease = LeaseOutputSerializer()
    item = QueueItemOutputSerializer()
    suggestion = SuggestionOutputSerializer(
        allow_null=True, help_text="Null when the project hides suggestions, the model has none for the item, or "
                                   "this lease withholds it (some items are labeled without one).",
    )


# The queue's responses are built as plain dicts in the shape of their serializers (which document
# them): instantiating nested serializers copies every declared field, a visible share of a request
# that does little else. tests/annotations/test_queue_api.py holds them to the serializers' output.
_datetime = serializers.DateTimeField()


def _served(request: Request, project: Project, lease: Lease) -> dict[str, Any]:
    suggestion = None
    if project.show_suggestions and not lease.suggestion_withheld and lease.predicted_label is not None:
        suggestion = {
            "label_id": lease.predicted_label_id,
            "label": lease.predicted_label.name,
            "confidence": lease.predicted_confidence,
        }
    return {
        "lease": {"id": str(lease.pk), "expires_at": _datetime.to_representation(lease.expires_at)},
        "item": _item_data(lease.item, project),
        "suggestion": suggestion,
    }


class QueueProgressApi(APIView):
    """The queue's progress: pool, labeled and done items, your labels today, and the scoring it serves from.

    Kept out of ``queue/next`` so that serving an item stays a handful of statements; a client
    shows progress as often as it likes.
    """

    throttle_scope = "queue"

    @extend_schema(responses=ProgressOutputSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id)
        return Response(ProgressOutputSerializer(selectors.queue_progress(project, request.user)).data)


class QueueNextApi(APIView):
    """Lease the next item to label (or return one you already hold); 204 when nothing is left for you.

    Send the ids of leases the client already shows in ``exclude`` to get a further item to prefetch.
    """

    throttle_scope = "queue"

    @extend_schema_serializer(component_name="QueueNext")
    class InputSerializer(serializers.Serializer):
        exclude = serializers.ListField(
            child=serializers.UUIDField(), required=False, default=list, max_length=100,
            help_text="Lease ids the client already holds.",
        )

    @extend_schema(request=InputSerializer, responses={200: ServedOutputSerializer, 204: OpenApiResponse()})
    def post(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        lease = services.queue_next(project=project, user=request.user, exclude=serializer.validated_data["exclude"])
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(_served(request, project, lease))


class QueueUndoApi(APIView):
    """Take back your latest label in the project and get its item leased to you again; 204 if there is none."""

    throttle_scope = "queue"

    @extend_schema(request=None, responses={200: ServedOutputSerializer, 204: OpenApiResponse()})
    def post(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id)
        lease = services.annotation_undo(project=project, user=request.user)
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(_served(request, project, lease))


class LeaseSubmitApi(APIView):
    """Label the item of your lease: 201 the first time, 200 with the same label when repeated."""

    throttle_scope = "queue"

    @extend_schema_serializer(component_name="LeaseSubmit")
    class InputSerializer(serializers.Serializer):
        label_id = serializers.IntegerField(required=False, min_value=1, max_value=ID_MAX)
        label = serializers.CharField(required=False, max_length=100, help_text="The label's name (or send label_id).")
        time_spent_ms = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=2**31 - 1)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if "label_id" not in attrs and "label" not in attrs:
                raise serializers.ValidationError("Send label_id or label (the label's name).")
            return attrs

    @extend_schema_serializer(component_name="LeaseAnnotation")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        item_id = serializers.IntegerField()
        label_id = serializers.IntegerField()
        label = serializers.CharField(source="label.name")
        created_at = serializers.DateTimeField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer, 200: OutputSerializer})
    def post(self, request: Request, lease_id: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        if not serializer.is_valid():
            # Someone else's lease is a 404 whatever the body; the lookup costs nothing on the valid path.
            selectors.lease_get_for_user(lease_id, request.user, related=())
            raise serializers.ValidationError(serializer.errors)
        data = serializer.validated_data
        annotation, created = services.annotation_submit_or_get(
            lease_id=lease_id,
            user=request.user,
            label_id=data.get("label_id"),
            label_name=data.get("label"),
            time_spent_ms=data.get("time_spent_ms"),
        )
        data = {
            "id": annotation.pk,
            "item_id": annotation.item_id,
            "label_id": annotation.label_id,
            "label": annotation.label.name,
            "created_at": _datetime.to_representation(annotation.created_at),
        }
        return Response(data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@extend_schema_serializer(component_name="LeaseState")
class LeaseStateOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    expires_at = serializers.DateTimeField()


class LeaseSkipApi(APIView):
    """Skip the item of your lease: it is given back and never served to you again."""

    throttle_scope = "queue"

    @extend_schema_serializer(component_name="LeaseSkip")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(
            max_length=SKIP_REASON_MAX_CHARS, required=False, allow_blank=True,
            help_text="Why you skip the item (optional); reviewers see it.",
        )

    @extend_schema(request=InputSerializer, responses=LeaseStateOutputSerializer)
    def post(self, request: Request, lease_id: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        reason = serializer.validated_data.get("reason", "")
        lease = services.lease_skip(lease_id=lease_id, user=request.user, reason=reason)
        return Response(LeaseStateOutputSerializer(lease).data)


class LeaseReleaseApi(APIView):
    """Give the item of your lease back unanswered (for instance when the page closes)."""

    throttle_scope = "queue"

    @extend_schema(request=None, responses=LeaseStateOutputSerializer)
    def post(self, request: Request, lease_id: str) -> Response:
        lease = services.lease_release(lease_id=lease_id, user=request.user)
        return Response(LeaseStateOutputSerializer(lease).data)


class LeaseRenewApi(APIView):
    """Keep the item of your lease reserved for another TTL; 409 if it expired and went to someone else."""

    throttle_scope = "queue"

    @extend_schema(request=None, responses=LeaseStateOutputSerializer)
    def post(self, request: Request, lease_id: str) -> Response:
        lease = services.lease_renew(lease_id=lease_id, user=request.user)
        return Response(LeaseStateOutputSerializer(lease).data)
