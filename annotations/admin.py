"""Django admin for projects, labels, items, annotations and imports."""
from django.contrib import admin

from .models import Annotation, ImportJob, Item, Label, Membership, Project


class LabelInline(admin.TabularInline):
    model = Label
    extra = 0


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "kind", "query_strategy", "audit_share", "overlap", "retrain_every_n_labels"]
    list_filter = ["kind", "query_strategy"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [LabelInline, MembershipInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "kind", "instructions", "feature_names"]}),
        ("Queue", {"fields": ["query_strategy", "audit_share", "overlap", "lease_ttl_seconds", "show_suggestions"]}),
        (
            "Retraining",
            {
                "fields": [
                    "retrain_every_n_labels", "retrain_interval_minutes", "degradation_window",
                    "degradation_floor", "degradation_margin", "drift_enabled", "drift_threshold",
                ]
            },
        ),
        (
            "Promotion gate",
            {"fields": ["gate_alpha", "gate_min_gain", "gate_min_audit", "gate_min_audit_first", "gate_max_recall_drop"]},
        ),
    ]


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "shortcut", "color", "order"]
    list_filter = ["project"]
    search_fields = ["name"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "project", "created_at"]
    list_filter = ["project"]
    search_fields = ["external_id", "text"]
    list_select_related = ["project"]
    readonly_fields = ["content_hash", "import_job"]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["item", "label", "annotator", "source", "is_audit", "model_version", "predicted_label", "created_at"]
    list_filter = ["item__project", "source", "is_audit", "annotator"]
    search_fields = ["item__external_id", "annotator__username"]
    list_select_related = ["item", "label", "annotator", "predicted_label"]
    raw_id_fields = ["item"]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["filename", "project", "status", "created_count", "unchanged_count", "rejected_count",
                    "features_status", "created_at"]
    list_filter = ["status", "features_status", "project"]
    search_fields = ["filename"]
    readonly_fields = [f.name for f in ImportJob._meta.fields]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role"]
    list_filter = ["role", "project"]
    search_fields = ["user__username"]
