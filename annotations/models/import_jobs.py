"""One imported file's job: its progress, counts and rejected rows."""
from django.conf import settings
from django.db import models

from annotations.models.projects import Project


def import_upload_path(job: "ImportJob", filename: str) -> str:
    return f"imports/{job.project_id}/{filename}"


class ImportJob(models.Model):
    """One imported file: its progress, counts, rejected rows and the feature job after it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    filename = models.CharField(max_length=255)
    upload = models.FileField(upload_to=import_upload_path, blank=True, max_length=300)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    message = models.TextField(blank=True, help_text="Why the whole file failed, if it did.")
    rows_total = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    unchanged_count = models.PositiveIntegerField(default=0)
    rejected_count = models.PositiveIntegerField(default=0)
    labels_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="Rejected rows: [{row, reason}], the first 1,000.")
    features_status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    features_total = models.PositiveIntegerField(default=0)
    features_done = models.PositiveIntegerField(default=0)
    features_message = models.TextField(blank=True, help_text="Why the feature job failed, if it did.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The import runs in short transactions (annotations.imports): the run that owns the job,
    # its last sign of life, when the whole file was found importable, and the rows stored so far.
    attempt = models.PositiveIntegerField(default=0, help_text="Runs claimed so far; only the latest may write.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(
        null=True, blank=True, help_text="When the whole file was read and found importable."
    )
    rows_published = models.PositiveIntegerField(
        default=0, help_text="Rows of the file stored so far; a lost run resumes after them."
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.filename} ({self.status})"
