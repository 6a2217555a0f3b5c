"""REST endpoints of import: import files now, read one import job, store embeddings of items already there."""
from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labelhub.parsers import JSONParser

from .. import selectors as annotation_selectors
from ..models import ImportJob
from ..models.projects import EMBEDDING_MAX_DIMENSIONS
from . import embeddings, selectors, services
from .rows import EXTERNAL_ID_MAX


class ImportJobDetailApi(APIView):
    """The status, counts and rejected rows of one import job."""

    @extend_schema_serializer(component_name="ImportJob")
    class OutputSerializer(serializers.ModelSerializer):
        progress = serializers.SerializerMethodField(help_text="Bytes read, file size and rows so far while running.")

        class Meta:
            model = ImportJob
            fields = [
                "id", "project", "filename", "status", "message", "progress", "rows_total", "created_count",
                "unchanged_count", "rejected_count", "labels_count", "errors", "features_status",
                "features_total", "features_done", "created_at", "started_at", "finished_at",
            ]

        def get_progress(self, job: ImportJob) -> dict[str, int] | None:
            return selectors.import_job_progress(job)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, job_id: int) -> Response:
        job = selectors.import_job_get_for_user(request.user, job_id)
        return Response(self.OutputSerializer(job).data)


class ImportJobCreateApi(APIView):
    """Import one or more files (multipart field ``file``) now; 400 if a file cannot be imported."""

    parser_classes = [MultiPartParser]

    @extend_schema_serializer(component_name="ImportJobCreate")
    class InputSerializer(serializers.Serializer):
        # Django refuses more files than DATA_UPLOAD_MAX_NUMBER_FILES in one request anyway.
        file = serializers.ListField(child=serializers.FileField(), allow_empty=False,
                                     max_length=settings.DATA_UPLOAD_MAX_NUMBER_FILES)

    JobsSerializer = inline_serializer("ImportJobList", {"jobs": ImportJobDetailApi.OutputSerializer(many=True)})
    # A file that failed gives its jobs and why; a request without a usable file, field errors and no jobs.
    FailedSerializer = inline_serializer("ImportJobFailed", {
        "detail": serializers.CharField(),
        "jobs": ImportJobDetailApi.OutputSerializer(many=True, required=False),
        "errors": serializers.DictField(required=False, help_text="Field errors, by field (nested for lists)."),
    })

    @extend_schema(
        request={"multipart/form-data": InputSerializer}, responses={201: JobsSerializer, 400: FailedSerializer}
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = annotation_selectors.project_get_for_user(request.user, project_id, min_role="manager")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        uploads = [(f.name, f) for f in serializer.validated_data["file"]]
        jobs = services.import_jobs_submit(project=project, user=request.user, uploads=uploads, wait=True)
        body = {"jobs": ImportJobDetailApi.OutputSerializer(jobs, many=True).data}
        failed = [job for job in jobs if job.status == ImportJob.Status.FAILED]
        if failed:
            body["detail"] = (
                failed[0].message if len(jobs) == 1 else "; ".join(f"{job.filename}: {job.message}" for job in failed)
            )
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        return Response(body, status=status.HTTP_201_CREATED)


@extend_schema_serializer(component_name="EmbeddingRow")
class EmbeddingRowSerializer(serializers.Serializer):
    """One row of a JSON body of embeddings, as the schema shows it."""

    external_id = serializers.CharField(max_length=EXTERNAL_ID_MAX)
    embedding = serializers.ListField(
        child=serializers.FloatField(), max_length=EMBEDDING_MAX_DIMENSIONS,
        help_text="The item's vector; every vector of a project has as many numbers as its first.",
    )


@extend_schema_field(EmbeddingRowSerializer)
class EmbeddingRowField(serializers.DictField):
    """A row taken as sent: the service checks each, so that a bad row is a rejected row, not a bad request."""


class EmbeddingImportApi(APIView):
    """Store vectors of the project's items by external_id: rows in a JSON body, or a JSONL or CSV file (``file``).

    Good rows are stored and bad ones listed (200); a request whose every row is bad stores nothing (400).
    """

    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema_serializer(component_name="EmbeddingImport")
    class InputSerializer(serializers.Serializer):
        embeddings = serializers.ListField(
            child=EmbeddingRowField(), allow_empty=False, max_length=embeddings.EMBEDDINGS_MAX_ROWS
        )

    @extend_schema_serializer(component_name="EmbeddingImportFile")
    class FileInputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text="JSONL or CSV: external_id and the project's embedding field.")

    @extend_schema_serializer(component_name="EmbeddingImportOutcome")
    class OutputSerializer(serializers.Serializer):
        updated = serializers.IntegerField(help_text="Items whose vector was stored or changed.")
        unchanged = serializers.IntegerField(help_text="Items that already had this vector.")
        rejected = serializers.IntegerField(help_text="Rows rejected, each listed in errors (the first 1,000).")
        errors = serializers.ListField(child=inline_serializer("EmbeddingImportError", {
            "row": serializers.IntegerField(), "where": serializers.CharField(), "reason": serializers.CharField(),
        }))

    FailedSerializer = inline_serializer("EmbeddingImportFailed", {
        "detail": serializers.CharField(),
        "updated": serializers.IntegerField(required=False),
        "unchanged": serializers.IntegerField(required=False),
        "rejected": serializers.IntegerField(required=False),
        "errors": serializers.JSONField(required=False, help_text="The rejected rows, or field errors by field."),
    })

    @extend_schema(
        request={"application/json": InputSerializer, "multipart/form-data": FileInputSerializer},
        responses={200: OutputSerializer, 400: FailedSerializer},
    )
    def post(self, request: Request, project_id: int) -> Response:
        # Like the import API: a member without the manager role finds nothing here (404).
        project = annotation_selectors.project_get_for_user(request.user, project_id, min_role="manager")
        if request.content_type.startswith("multipart/"):
            serializer = self.FileInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            upload = serializer.validated_data["file"]
            outcome = embeddings.embeddings_import_file(project=project, filename=upload.name, fileobj=upload)
        else:
            serializer = self.InputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            records = serializer.validated_data["embeddings"]
            outcome = embeddings.embeddings_import_rows(project=project, records=records)
        body = self.OutputSerializer(outcome).data
        if not (outcome.updated or outcome.unchanged):
            body["detail"] = f"Every row was rejected ({outcome.rejected:,}); nothing was stored."
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        return Response(body)
