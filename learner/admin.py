"""Django admin for features, model versions, training runs, the live-model history, drift checks and experiments.

Actions call the same services as the pages (retrain, rescore, promote, roll back) and report
one message per object.
"""
from django.contrib import admin, messages
from django.db.models import Count

from annotations.admin import ProjectAdmin
from annotations.models import Project
from annotations.services import project_overlap_apply
from labelhub.api import DomainError

from . import selectors
from .models import (
    DriftCheck,
    Experiment,
    FeatureVector,
    LiveModel,
    ModelVersion,
    PredictionCorrection,
    PredictionLog,
    SwapHistory,
    TrainingRun,
)
from .services import models as model_services
from .services import triggers
from .services.scoring import score_pool_request


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "project", "number", "status", "labels_used", "audit_accuracy", "code_version",
                    "created_at"]
    list_filter = ["status", "project"]
    search_fields = ["project__name", "label_snapshot_hash", "artifact_sha256", "code_version"]
    list_select_related = ["project"]
    readonly_fields = ["project", "number", "status", "training_run", "artifact_name", "artifact_sha256",
                       "label_snapshot_hash", "labels_used", "metrics", "classes", "algorithm", "hyperparameters",
                       "feature_space", "code_version", "query_strategy"]
    actions = ["promote", "roll_back"]

    def has_add_permission(self, request) -> bool:
        return False  # versions come from training runs only

    @admin.display(description="audit accuracy")
    def audit_accuracy(self, obj: ModelVersion) -> str:
        accuracy = obj.metrics.get("accuracy")
        return "–" if accuracy is None else f"{accuracy:.3f} (n = {obj.metrics.get('n')})"

    def _one_per_project(self, request, queryset) -> list[ModelVersion]:
        """The selected versions, refusing projects with more than one selected: only one can be live."""
        versions = list(queryset.select_related("project").order_by("project_id", "number"))
        per_project = {}
        for version in versions:
            per_project.setdefault(version.project_id, []).append(version)
        chosen = []
        for group in per_project.values():
            if len(group) > 1:
                names = ", ".join(f"v{v.number}" for v in group)
                self.message_user(request, f"{group[0].project}: select one version, not {names}.", messages.ERROR)
            else:
                chosen.append(group[0])
        return chosen

    @admin.action(description="Promote (make live; the gate is bypassed)")
    def promote(self, request, queryset) -> None:
        for version in self._one_per_project(request, queryset):
            try:
                model_services.model_version_force_promote(
                    version=version, actor=request.user, reason=f"from the admin by {request.user.get_username()}"
                )
            except DomainError as exc:
                self.message_user(request, f"{version}: {exc.message}", messages.WARNING)
            else:
                self.message_user(request, f"{version} is live; the pool will be rescored.")

    @admin.action(description="Roll back to (a version that was live before)")
    def roll_back(self, request, queryset) -> None:
        for version in self._one_per_project(request, queryset):
            try:
                model_services.model_version_rollback(version=version, actor=request.user)
            except DomainError as exc:
                self.message_user(request, f"{version}: {exc.message}", messages.WARNING)
            else:
                self.message_user(request, f"{version} is live again; the pool will be rescored.")


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "trigger", "status", "stage", "requested_by", "created_at", "finished_at"]
    list_filter = ["trigger", "status", "project"]
    search_fields = ["=id", "project__name", "label_snapshot_hash", "error"]
    list_select_related = ["project", "requested_by"]
    readonly_fields = ["project", "trigger", "requested_by", "status", "stage", "evidence", "decision", "timings",
                       "error", "label_snapshot_hash", "started_at", "finished_at"]
    exclude = ["label_lineage"]  # ranges of thousands of ids: the hash stands for them

    def has_add_permission(self, request) -> bool:
        return False  # a retrain is asked for with the project action or the models page


@admin.register(LiveModel)
class LiveModelAdmin(admin.ModelAdmin):
    list_display = ["project", "version", "changed_at"]
    search_fields = ["project__name"]
    list_select_related = ["project", "version__project"]
    readonly_fields = ["project", "version", "changed_at"]

    def has_add_permission(self, request) -> bool:
        return False  # the pointer moves only in a swap: use the version actions

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SwapHistory)
class SwapHistoryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "project", "from_version", "to_version", "trigger", "actor", "reason"]
    list_filter = ["trigger", "project"]
    search_fields = ["reason", "actor__username"]
    list_select_related = ["project", "from_version__project", "to_version__project", "actor"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # history is written by swaps only


@admin.register(DriftCheck)
class DriftCheckAdmin(admin.ModelAdmin):
    list_display = ["created_at", "project", "model_version", "drifted", "training_run"]
    list_filter = ["drifted", "project"]
    search_fields = ["project__name"]
    list_select_related = ["project", "training_run"]
    readonly_fields = ["project", "model_version", "evidence", "drifted", "training_run", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "mode", "champion", "challenger", "traffic_share", "status", "looks_done",
                    "created_at", "decided_at"]
    list_filter = ["status", "mode", "project"]
    search_fields = ["=id", "project__name"]
    list_select_related = ["project", "champion__project", "challenger__project"]
    readonly_fields = ["project", "champion", "challenger", "mode", "traffic_share", "rule", "status", "looks_done",
                       "results", "decision", "created_by", "stopped_by", "created_at", "decided_at"]

    def has_add_permission(self, request) -> bool:
        return False  # started over REST, where the rule is fixed and checked


@admin.register(PredictionLog)
class PredictionLogAdmin(admin.ModelAdmin):
    """Written a thousand rows at a time by /predict: read-only, never counted in full."""

    list_display = ["id", "project_id", "experiment_id", "version_id", "arm", "client_id", "label_id", "confidence",
                    "true_label_id", "outcome_source", "created_at"]
    list_filter = ["arm", "outcome_source"]
    search_fields = ["=project_id", "=experiment_id", "=item_id", "=client_id"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PredictionCorrection)
class PredictionCorrectionAdmin(admin.ModelAdmin):
    """Changes of predictions' outcomes after they were given: read-only, as they happened."""

    list_display = ["prediction_id", "experiment_id", "label_before_id", "source_before", "label_after_id",
                    "corrected_by", "created_at"]
    search_fields = ["=prediction__id", "=experiment_id", "corrected_by__username"]
    list_select_related = ["corrected_by"]
    raw_id_fields = ["prediction"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(FeatureVector)
class FeatureVectorAdmin(admin.ModelAdmin):
    """Stored features (binary): listed to see which items have them, in which space."""

    list_display = ["item_id", "project", "space"]
    list_filter = ["space", "project"]
    search_fields = ["=item__id", "item__external_id"]
    list_select_related = ["project"]
    fields = ["item", "project", "space"]
    readonly_fields = ["item", "project", "space"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


admin.site.unregister(Project)


@admin.register(Project)
class ProjectLifecycleAdmin(ProjectAdmin):
    """The project admin, keeping the project's retrain schedule in django-celery-beat in step."""

    list_display = [*ProjectAdmin.list_display, "live_version", "version_count"]
    actions = [*ProjectAdmin.actions, "retrain_now", "rescore"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("live_model__version").annotate(
            version_total=Count("model_versions", distinct=True)
        )

    @admin.display(description="live")
    def live_version(self, obj: Project) -> str:
        live = getattr(obj, "live_model", None)
        return f"v{live.version.number}" if live and live.version else "–"

    @admin.display(description="versions", ordering="version_total")
    def version_count(self, obj: Project) -> int:
        return obj.version_total

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

    @admin.action(description="Rescore the pool with the live model")
    def rescore(self, request, queryset) -> None:
        for project in queryset:
            score_pool_request(project.pk)
            live = selectors.model_version_live(project.pk)
            by = f"v{live.number}" if live else "no model (diverse items first)"
            self.message_user(request, f"{project}: rescoring of the pool by {by} queued.")
