"""Django admin for model versions, training runs and the live-model history."""
from django.contrib import admin

from .models import LiveModel, ModelVersion, SwapHistory, TrainingRun


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["project", "number", "status", "algorithm", "labels_used", "created_at"]
    list_filter = ["project", "status"]
    readonly_fields = ["artifact_name", "artifact_sha256", "label_snapshot_hash", "metrics", "classes"]


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "trigger", "status", "stage", "created_at", "finished_at"]
    list_filter = ["project", "trigger", "status"]
    readonly_fields = ["evidence", "decision", "timings", "error", "label_snapshot_hash"]


@admin.register(LiveModel)
class LiveModelAdmin(admin.ModelAdmin):
    list_display = ["project", "version", "changed_at"]


@admin.register(SwapHistory)
class SwapHistoryAdmin(admin.ModelAdmin):
    list_display = ["project", "from_version", "to_version", "trigger", "actor", "created_at"]
    list_filter = ["project", "trigger"]
