"""REST endpoints of predictions and A/B experiments: predict, feedback, experiments list/detail/create/stop."""
from collections.abc import Mapping

from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations import selectors as annotation_selectors
from annotations.models import EMBEDDING_MAX_DIMENSIONS
from labelhub.api import ID_MAX, NUMBER_MAX, DomainError, NotFound

from .models import Experiment
from .services import experiments as experiment_services
from .services import predict as predict_services


@extend_schema_serializer(component_name="Prediction")
class PredictionOutputSerializer(serializers.Serializer):
    prediction_id = serializers.IntegerField()
    label = serializers.CharField()
    label_id = serializers.IntegerField()
    probabilities = serializers.DictField(child=serializers.FloatField())
    model_version = serializers.IntegerField()


@extend_schema_serializer(component_name="Experiment")
class ExperimentOutputSerializer(serializers.ModelSerializer):
    champion = serializers.IntegerField(source="champion.number")
    challenger = serializers.IntegerField(source="challenger.number")
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    stopped_by = serializers.CharField(source="stopped_by.username", allow_null=True, default=None)

    class Meta:
        model = Experiment
        fields = ["id", "champion", "challenger", "mode", "traffic_share", "status", "rule", "looks_done", "results",
                  "decision", "created_by", "stopped_by", "created_at", "decided_at"]


# Who may predict and give feedback: the project's API clients, and managers (staff are admins everywhere).
PREDICT_ACCESS = {"min_role": "manager", "also": ("client",)}


class PredictApi(APIView):
    """Predict one item or a batch (API clients, managers): text, numeric values, an image upload, an embedding
    (a model trained on imported embeddings), or an item id.

    JSON: ``{"text": ...}`` / ``{"values": [...]}`` / ``{"embedding": [...]}`` / ``{"item_id": 7}`` for one item, or
    ``{"items": [...]}`` for a batch; multipart: one or more ``image`` files. In a split
    experiment the authenticated client's identity decides its arm, and keeps it there.
    """

    throttle_scope = "predict"

    @extend_schema_serializer(component_name="PredictRequest")
    class InputSerializer(serializers.Serializer):
        # Documents the body; the view checks it by hand (learner.services.predict), within the same bounds.
        items = serializers.ListField(child=serializers.DictField(), required=False,
                                      max_length=settings.LABELHUB_PREDICT_MAX_BATCH)
        text = serializers.CharField(required=False, max_length=settings.LABELHUB_TEXT_MAX_CHARS)
        values = serializers.ListField(child=serializers.FloatField(), required=False,
                                       max_length=settings.LABELHUB_MAX_FEATURES)
        embedding = serializers.ListField(
            child=serializers.FloatField(), required=False, max_length=EMBEDDING_MAX_DIMENSIONS,
            help_text="The item's vector, when the live model was trained on imported embeddings (its dimension).",
        )
        item_id = serializers.IntegerField(required=False, min_value=1, max_value=ID_MAX)

    @extend_schema(request=InputSerializer, responses={200: PredictionOutputSerializer(many=True)})
    def post(self, request: Request, project_id: int) -> Response:
        project = annotation_selectors.project_get_for_user(request.user, project_id, **PREDICT_ACCESS)
        # Validated by hand, not by the serializer above: a batch of 1,000 rows must cost microseconds per row.
        data = request.data
        if request.FILES:
            uploads = request.FILES.getlist("image")
            if not uploads:
                raise DomainError("Send images as multipart fields named 'image'.")
            if len(uploads) > settings.LABELHUB_PREDICT_MAX_BATCH:
                raise DomainError(f"A batch holds at most {settings.LABELHUB_PREDICT_MAX_BATCH} items.")
            if any(upload.size > settings.LABELHUB_IMAGE_MAX_BYTES for upload in uploads):
                raise DomainError(f"An image is larger than {settings.LABELHUB_IMAGE_MAX_BYTES} bytes.")
            # The files themselves: predict checks each (format, pixels) before reading the next.
            items, single = [{"image": upload} for upload in uploads], len(uploads) == 1
        elif not isinstance(data, Mapping):
            raise DomainError("The body must be a JSON object.")
        elif "items" in data:
            items, single = data["items"], False
            if not isinstance(items, list):
                raise DomainError("items must be a list.")
        else:
            items, single = [data], True
        if isinstance(data, Mapping) and "caller" in data:
            # It once chose the experiment arm; an arm a request could choose is an arm anyone can steer.
            raise DomainError("caller is not accepted: the experiment arm follows the authenticated API client.")
        answers = predict_services.predict(project=project, items=items, client_id=request.user.pk)
        return Response(answers[0] if single else {"predictions": answers})


class PredictionFeedbackApi(APIView):
    """Give the true label of a prediction (the client that asked, or a manager), once; a change is a correction.

    The outcome counts once towards the prediction's experiment; a different label later needs
    ``correction: true`` and is recorded (who, when, the label before and after).
    """

    throttle_scope = "predict"

    @extend_schema_serializer(component_name="PredictionFeedbackRequest")
    class InputSerializer(serializers.Serializer):
        label = serializers.CharField(required=False, max_length=200)
        label_id = serializers.IntegerField(required=False, min_value=1, max_value=ID_MAX)
        correction = serializers.BooleanField(
            required=False, default=False, help_text="Replace an outcome given before (recorded as a correction).")
        note = serializers.CharField(required=False, allow_blank=True, max_length=1000, help_text="Why (corrections).")

        def validate(self, attrs):
            if ("label" in attrs) == ("label_id" in attrs):
                raise serializers.ValidationError("Give either label or label_id.")
            return attrs

    @extend_schema_serializer(component_name="PredictionFeedback")
    class OutputSerializer(serializers.Serializer):
        prediction_id = serializers.IntegerField(source="log.pk")
        true_label_id = serializers.IntegerField(source="log.true_label_id")
        experiment_id = serializers.IntegerField(source="log.experiment_id", allow_null=True)
        corrected = serializers.BooleanField(help_text="Whether this request corrected an earlier outcome.")

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer})
    def post(self, request: Request, project_id: int, prediction_id: int) -> Response:
        project = annotation_selectors.project_get_for_user(request.user, project_id, **PREDICT_ACCESS)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        feedback = experiment_services.prediction_feedback(
            project=project, user=request.user, role=project.viewer_role, prediction_id=prediction_id,
            label_id=values.get("label_id"), label_name=values.get("label"), correction=values["correction"],
            note=values.get("note", ""),
        )
        return Response(self.OutputSerializer(feedback).data)


class ExperimentListApi(APIView):
    """The project's experiments (managers, who also start one with POST)."""

    @extend_schema_serializer(component_name="ExperimentStart")
    class InputSerializer(serializers.Serializer):
        challenger = serializers.IntegerField(min_value=1, max_value=NUMBER_MAX,
                                              help_text="Version number of the challenger.")
        mode = serializers.ChoiceField(choices=Experiment.Mode.choices)
        traffic_share = serializers.FloatField(required=False, default=0.1, min_value=0.0, max_value=1.0)
        alpha = serializers.FloatField(required=False, min_value=0.0001, max_value=0.5)
        min_gain = serializers.FloatField(required=False, min_value=0.0, max_value=0.5)
        power = serializers.FloatField(required=False, default=0.8, min_value=0.5, max_value=0.99)
        looks = serializers.IntegerField(required=False, min_value=1, max_value=20)
        min_sample = serializers.IntegerField(required=False, min_value=1, max_value=10_000_000)
        discordance = serializers.FloatField(required=False, default=0.2, min_value=0.01, max_value=1.0)

    @extend_schema(responses=ExperimentOutputSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project = annotation_selectors.project_get_for_user(request.user, project_id, min_role="manager")
        experiments = Experiment.objects.filter(project=project).select_related(
            "champion", "challenger", "created_by", "stopped_by")
        return Response(ExperimentOutputSerializer(experiments, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: ExperimentOutputSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = annotation_selectors.project_get_for_user(request.user, project_id, min_role="manager")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        experiment = experiment_services.experiment_start(
            project=project, user=request.user, challenger_number=values.pop("challenger"), **values
        )
        return Response(ExperimentOutputSerializer(experiment).data, status=status.HTTP_201_CREATED)


def _experiment(project, experiment_id: int) -> Experiment:
    experiment = Experiment.objects.select_related("champion", "challenger", "created_by", "stopped_by").filter(
        project=project, pk=experiment_id).first()
    if experiment is None:
        raise NotFound("Experiment not found.")
    return experiment


class ExperimentDetailApi(APIView):
    """One experiment: arms, outcomes, the rule, the decision."""

    @extend_schema(responses=ExperimentOutputSerializer)
    def get(self, request: Request, project_id: int, experiment_id: int) -> Response:
        project = annotation_selectors.project_get_for_user(request.user, project_id, min_role="manager")
        return Response(ExperimentOutputSerializer(_experiment(project, experiment_id)).data)


class ExperimentStopApi(APIView):
    """Stop a running experiment early and keep the champion (managers)."""

    @extend_schema_serializer(component_name="ExperimentStop")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(required=False, allow_blank=True, max_length=1000)

    @extend_schema(request=InputSerializer, responses={200: ExperimentOutputSerializer})
    def post(self, request: Request, project_id: int, experiment_id: int) -> Response:
        project = annotation_selectors.project_get_for_user(request.user, project_id, min_role="manager")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        experiment = experiment_services.experiment_stop(
            experiment=_experiment(project, experiment_id), user=request.user, reason=data.validated_data.get("reason", "")
        )
        return Response(ExperimentOutputSerializer(experiment).data)
