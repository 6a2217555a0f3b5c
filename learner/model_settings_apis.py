"""REST endpoint of a project's featurizer and model: read them (members), change them (managers)."""
from django.core.exceptions import PermissionDenied
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations import selectors as annotation_selectors
from learner.ml import training

from .services import model_settings as services


class ChoiceOutputSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()


class LiveModelOutputSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    algorithm = serializers.CharField()
    feature_space = serializers.CharField(help_text="The features the live model was trained on.")


@extend_schema_serializer(component_name="ModelSettings")
class ModelSettingsOutputSerializer(serializers.Serializer):
    featurizer = ChoiceOutputSerializer(help_text="The featurizer the project uses (its kind's default unless chosen).")
    featurizer_choices = ChoiceOutputSerializer(many=True, help_text="The featurizers a project of this kind may use.")
    model_kind = serializers.CharField(help_text="The classifier each retrain fits.")
    model_kind_label = serializers.CharField()
    model_choices = ChoiceOutputSerializer(many=True)
    embedding_field = serializers.CharField(help_text="Where imports find each item's vector.")
    embedding_dim = serializers.IntegerField(allow_null=True, help_text="Numbers per embedding; null until the first "
                                                                        "vector is imported.")
    features_error = serializers.CharField(help_text="Why the last feature job failed, until one succeeds; empty if "
                                                     "none did.")
    notice = serializers.CharField(help_text="What the choice still waits for, in a sentence; empty when nothing.")
    live = LiveModelOutputSerializer(allow_null=True, help_text="The live model, null before the first.")


class ModelSettingsApi(APIView):
    """The project's featurizer and model with their choices (members); managers change them with PATCH.

    A new featurizer or embedding field recomputes every item's features in the background and a
    new model asks for a retrain; the live model keeps serving until a model of the new kind proves
    itself better (promotion rule 'better', an A/B experiment, or a manager).
    """

    @extend_schema_serializer(component_name="ModelSettingsUpdate")
    class InputSerializer(serializers.Serializer):
        featurizer = serializers.CharField(
            required=False, allow_blank=True, max_length=services.FEATURIZER_MAX_CHARS,
            help_text="A key of featurizer_choices; empty for the kind's default.",
        )
        model_kind = serializers.ChoiceField(required=False, choices=training.MODELS)
        embedding_field = serializers.CharField(
            required=False, max_length=services.EMBEDDING_FIELD_MAX_CHARS,
            help_text="Letters, digits and underscores: a JSON field, a CSV column holding a JSON list, or the prefix "
                      "of CSV columns <name>_0, <name>_1, ….",
        )

    @extend_schema(responses=ModelSettingsOutputSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        project = annotation_selectors.project_get_for_user(request.user, project_id)
        return Response(ModelSettingsOutputSerializer(services.model_settings_get(project)).data)

    @extend_schema(request=InputSerializer, responses=ModelSettingsOutputSerializer)
    def patch(self, request: Request, project_id: int) -> Response:
        # Members find the project (a 403 below for those who may not change it); strangers do not (404).
        project = annotation_selectors.project_get_for_user(request.user, project_id)
        if annotation_selectors.ROLE_RANK[project.viewer_role] < annotation_selectors.ROLE_RANK["manager"]:
            raise PermissionDenied(services.MANAGERS_ONLY)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.model_settings_update(project=project, user=request.user, **data.validated_data)
        return Response(ModelSettingsOutputSerializer(services.model_settings_get(project)).data)
