"""REST endpoints of the model lifecycle: retrain, runs, versions, promote and roll back."""
from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations import selectors as annotation_selectors
from labelhub.api import Conflict, query_validated

from . import selectors
from .models import ModelVersion, SwapHistory, TrainingRun
from .services import models as model_services
from .services import triggers


@extend_schema_serializer(component_name="TrainingRun")
class TrainingRunOutputSerializer(serializers.ModelSerializer):
    trigger_sentence = serializers.CharField(read_only=True, help_text="Why the run was started, in words.")
    verdict = serializers.CharField(
        read_only=True, help_text="live, not_promoted (not enough evidence yet), rejected (shown worse), or empty."
    )
    decision_sentence = serializers.CharField(
        source="decision.reason", read_only=True, default="", help_text="The gate's decision, in words."
    )

    class Meta:
        model = TrainingRun
        fields = ["id", "trigger", "trigger_sentence", "evidence", "status", "stage", "label_snapshot_hash",
                  "verdict", "decision_sentence", "decision", "timings", "error", "created_at", "started_at",
                  "finished_at"]


@extend_schema_serializer(component_name="ModelVersion")
class ModelVersionOutputSerializer(serializers.ModelSerializer):
    status_display = serializers.CharField(source="get_status_display", read_only=True,
                                           help_text="Live, Retired, Not promoted, Rejected or Candidate.")
    decision_sentence = serializers.CharField(
        source="training_run.decision.reason", read_only=True, default="",
        help_text="Why the gate made it live or kept it out, in words.",
    )

    class Meta:
        model = ModelVersion
        fields = ["id", "number", "status", "status_display", "decision_sentence", "algorithm", "hyperparameters", "feature_space", "classes",
                  "artifact_name", "artifact_sha256", "artifact_removed_at", "label_snapshot_hash", "labels_used",
                  "metrics", "training_run", "created_at"]


@extend_schema_serializer(component_name="SwapHistory")
class SwapOutputSerializer(serializers.ModelSerializer):
    from_version = serializers.IntegerField(source="from_version.number", allow_null=True, default=None)
    to_version = serializers.IntegerField(source="to_version.number")
    actor = serializers.CharField(source="actor.username", allow_null=True, default=None)

    class Meta:
        model = SwapHistory
        fields = ["id", "from_version", "to_version", "reason", "trigger", "actor", "created_at"]


class RetrainApi(APIView):
    """Ask for a retrain now (managers); 409 while a run is queued or running."""

    @extend_schema_serializer(component_name="RetrainRequest")
    class InputSerializer(serializers.Serializer):
        note = serializers.CharField(required=False, allow_blank=True, max_length=500)

    @extend_schema(request=InputSerializer, responses={202: TrainingRunOutputSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = annotation_selectors.project_get_for_user(request.user, project_id, min_role="manager")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = triggers.manual_trigger(project.pk, request.user, data.validated_data.get("note", ""))
        if run is None:
            raise Conflict("A training run is already queued or running for this project.")
        return Response(TrainingRunOutputSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunListApi(APIView):
    """The project's training runs, newest first (reviewers and managers)."""

    @extend_schema(responses=TrainingRunOutputSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project = annotation_selectors.project_get_for_user(request.user, project_id, min_role="reviewer")
        runs = TrainingRun.objects.filter(project=project).select_related("requested_by").order_by("-created_at")[:200]
        return Response(TrainingRunOutputSerializer(runs, many=True).data)


class ModelVersionListApi(APIView):
    """The project's model versions and the history of which was live when, each newest first, ``limit`` at a time.

    Page back through the versions with ``before`` (the smallest number of the page before) and
    through the history with ``history_before`` (the smallest swap id of the page before).
    """

    @extend_schema_serializer(component_name="ModelVersionListQuery")
    class InputSerializer(serializers.Serializer):
        # The bound of the cursor-paginated lists, read when the module loads (a deployment's settings apply).
        limit = serializers.IntegerField(
            default=100, min_value=1, max_value=settings.LABELHUB_API_MAX_PAGE_SIZE,
            help_text="At most this many versions, and at most this many swaps of the history.",
        )
        before = serializers.IntegerField(
            required=False, min_value=1, max_value=2**31 - 1, help_text="Only versions numbered below this."
        )
        history_before = serializers.IntegerField(
            required=False, min_value=1, max_value=2**63 - 1, help_text="Only swaps with an id below this."
        )

    @extend_schema_serializer(component_name="ModelVersionList")
    class OutputSerializer(serializers.Serializer):
        live = serializers.IntegerField(allow_null=True)
        versions = ModelVersionOutputSerializer(many=True)
        history = SwapOutputSerializer(many=True)
        versions_total = serializers.IntegerField(help_text="How many versions the project has in all.")
        history_total = serializers.IntegerField(help_text="How many swaps the project's history holds in all.")

    @extend_schema(parameters=[InputSerializer], responses=OutputSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        project = annotation_selectors.project_get_for_user(request.user, project_id, min_role="reviewer")
        query = query_validated(request, self.InputSerializer)
        listing = selectors.model_versions_list(project.pk, **query)
        return Response(self.OutputSerializer(listing).data)


class ModelVersionSwapApi(APIView):
    """Roll back to an earlier live version, or promote one the gate did not (managers, with a reason)."""

    action: str = "rollback"

    @extend_schema_serializer(component_name="ModelVersionSwap")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(required=False, allow_blank=True, max_length=1000)

    @extend_schema(request=InputSerializer, responses={200: SwapOutputSerializer})
    def post(self, request: Request, project_id: int, number: int) -> Response:
        project = annotation_selectors.project_get_for_user(request.user, project_id, min_role="manager")
        version = get_object_or_404(ModelVersion, project=project, number=number)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reason = data.validated_data.get("reason", "")
        if self.action == "rollback":
            history = model_services.model_version_rollback(version=version, actor=request.user, reason=reason)
        else:
            history = model_services.model_version_force_promote(version=version, actor=request.user, reason=reason)
        return Response(SwapOutputSerializer(history).data)
