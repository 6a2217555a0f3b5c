"""REST endpoints of import: import files now, and read one import job."""
from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors as annotation_selectors
from ..models import ImportJob
from . import selectors, services


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
