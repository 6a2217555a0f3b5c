"""Django admin for model versions, training runs and the live-model history."""
from django.contrib import admin, messages

from annotations.admin import ProjectAdmin
from annotations.models import Project
from annotations.services import project_overlap_apply

from .models import LiveModel, ModelVersion, SwapHistory, TrainingRun
from .services import triggers


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


admin.site.unregister(Project)


@admin.register(Project)
class ProjectLifecycleAdmin(ProjectAdmin):
    """The project admin, keeping the project's retrain schedule in django-celery-beat in step."""

    actions = ["retrain_now"]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        triggers.schedule_sync(obj)
        if change and "overlap" in form.changed_data:
            changed = project_overlap_apply(obj)
            self.message_user(request, f"Overlap {obj.overlap}: {changed} items moved in or out of the queue.")

    @admin.action(description="Retrain now")
    def retrain_now(self, request, queryset) -> None:
        for project in queryset:
            run = triggers.manual_trigger(project.pk, request.user, note="admin action")
            if run is None:
                self.message_user(request, f"{project}: a run is already queued or running.", messages.WARNING)
            else:
                self.message_user(request, f"{project}: retrain queued (run {run.pk}).")
