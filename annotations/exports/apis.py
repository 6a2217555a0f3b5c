"""REST endpoint of the export: stream a project's labels in the format and mode asked for."""
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.views import APIView

from labelhub.api import query_validated

from ..models import Project
from ..selectors import project_get_for_user
from . import formats
from .rows import MODES, ExportOptions
from .selectors import project_export


class _IgnoreFormatParameter(DefaultContentNegotiation):
    """The export's ``format`` names the file format, not one of DRF's renderers."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ProjectExportApi(APIView):
    """Stream the project's labels as JSONL, CSV, JSON or Label Studio tasks (managers).

    ``mode=final``: one row per item with its final label (a reviewer's, else the majority, ties to
    the earliest label); ``mode=all``: every annotation. ``since`` keeps annotations changed at or
    after it (final: items with such a change); the ``X-Export-Next-Since`` header is the value to
    send next time. The export is one consistent snapshot on PostgreSQL. Images are signed links
    that work without a session until they expire.
    """

    throttle_scope = "export"
    content_negotiation_class = _IgnoreFormatParameter

    @extend_schema_serializer(component_name="ExportQuery")
    class InputSerializer(serializers.Serializer):
        format = serializers.ChoiceField(choices=formats.FORMATS, default="jsonl")
        mode = serializers.ChoiceField(choices=MODES, default="final")
        since = serializers.DateTimeField(required=False, help_text="Only annotations changed at or after this.")
        include_prediction = serializers.BooleanField(
            default=False, help_text="Add the model version, predicted label and confidence recorded at labeling."
        )
        include_audit = serializers.BooleanField(default=False, help_text="Add whether a label is an audit label.")

    @extend_schema(
        parameters=[InputSerializer],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description="One JSON object a line."),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="A header row, then one row each."),
            (200, "application/json"): OpenApiResponse(
                {"type": "array", "items": {"type": "object", "additionalProperties": True}},
                description="format=json: an array of rows; format=labelstudio: an array of Label Studio tasks.",
            ),
        },
    )
    def get(self, request: Request, project_id: int) -> StreamingHttpResponse:
        project = project_get_for_user(request.user, project_id, min_role="manager")
        return export_response(request, project, query_validated(request, self.InputSerializer))


def export_response(request: HttpRequest, project: Project, query: dict) -> StreamingHttpResponse:
    """Stream the export that ``query`` (validated by ``ProjectExportApi.InputSerializer``) asks for, as an attachment.

    The API and the export page both answer with this, so a download from either is the same file.
    """
    query = dict(query)
    fmt = query.pop("format")
    options = ExportOptions(**query)
    # Labels are timestamped just before they commit: the next pull starts a little before this one.
    next_since = timezone.now() - timedelta(seconds=settings.LABELHUB_EXPORT_SINCE_OVERLAP)
    chunks = project_export(project, fmt, options, base_url=request.build_absolute_uri("/")[:-1])
    response = StreamingHttpResponse(chunks, content_type=formats.CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-{options.mode}.{formats.EXTENSIONS[fmt]}"'
    response["X-Export-Next-Since"] = next_since.isoformat()
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # let a proxy pass rows on as they come
    return response
