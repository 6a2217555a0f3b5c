"""Django admin for projects, labels, items, annotations, imports, leases and queue scorings."""
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from .models import (
    Annotation,
    AnnotationCorrection,
    ImportJob,
    Invitation,
    Item,
    ItemEmbedding,
    Label,
    Lease,
    Membership,
    Project,
    QueueScoring,
)
from labelhub.api import NotFound

from .selectors.clients import api_client_get
from .selectors.labels import item_final_labels
from .services.clients import api_client_token_issue
from .services.review import item_gold_set


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
    actions = ["export_annotations"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "kind", "instructions", "shown_metadata_fields", "feature_names"]}),
        ("Queue", {"fields": ["query_strategy", "audit_share", "overlap", "lease_ttl_seconds", "show_suggestions"]}),
        ("Review", {"fields": ["review_confidence"]}),
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
            {"fields": ["promotion_rule", "gate_margin", "gate_alpha", "gate_min_gain", "gate_min_audit", "gate_min_audit_first", "gate_max_recall_drop"]},
        ),
    ]


    @admin.action(description="Export annotations (JSONL)")
    def export_annotations(self, request, queryset):
        """Download one project's annotations through the REST export; it streams, so one project at a time."""
        projects = list(queryset[:2])
        if len(projects) != 1:
            self.message_user(
                request, "Export one project at a time: select a single project (each export is its own download).",
                messages.WARNING,
            )
            return None
        try:
            url = reverse("api-project-export", args=[projects[0].pk])
        except NoReverseMatch:
            self.message_user(request, "The export API is not installed in this deployment.", messages.ERROR)
            return None
        return HttpResponseRedirect(f"{url}?format=jsonl")


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "shortcut", "color", "order"]
    list_filter = ["project"]
    search_fields = ["name"]


@admin.register(ItemEmbedding)
class ItemEmbeddingAdmin(admin.ModelAdmin):
    """Imported vectors, read-only: they change by import (the embeddings API or command), never by hand."""

    list_display = ["item", "project", "dimensions", "updated_at"]
    list_filter = ["project"]
    list_select_related = ["item", "project"]
    exclude = ["vector"]
    readonly_fields = ["item", "project", "dimensions", "updated_at"]

    @admin.display(description="numbers")
    def dimensions(self, embedding: ItemEmbedding) -> int:
        return len(embedding.vector) // 4

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "project", "resolved_label", "gold_label", "created_at"]
    list_filter = ["project", ("gold_label", admin.EmptyFieldListFilter)]
    search_fields = ["external_id", "text"]
    list_select_related = ["project", "resolved_label", "gold_label"]
    # Images are linked through the item media view (it checks membership): MEDIA_ROOT has no URL of its own.
    exclude = ["image", "thumbnail"]
    readonly_fields = ["content_hash", "import_job", "resolved_label", "resolved_by", "resolved_at", "image_link"]
    actions = ["make_gold_from_final_label", "clear_gold"]

    @admin.display(description="image")
    def image_link(self, item: Item) -> str:
        if not item.image:
            return "-"
        return format_html('<a href="{}">{}</a>', reverse("item-media", args=[item.pk, "image"]), item.image.name)

    @admin.action(description="Make gold, with each item's final label (resolved, else the majority)")
    def make_gold_from_final_label(self, request, queryset):
        marked = 0
        for project_id in set(queryset.values_list("project_id", flat=True)):
            items = list(queryset.filter(project_id=project_id))
            final = item_final_labels(project_id, [item.pk for item in items])
            for item in items:
                if item.pk in final:
                    item_gold_set(item=item, label=Label.objects.get(pk=final[item.pk]))
                    marked += 1
        skipped = queryset.count() - marked
        self.message_user(request, f"{marked} item(s) made gold; {skipped} without labels left as they were.")

    @admin.action(description="Make ordinary (not gold)")
    def clear_gold(self, request, queryset):
        count = queryset.update(gold_label=None)
        self.message_user(request, f"{count} item(s) are no longer gold.")


@admin.register(AnnotationCorrection)
class AnnotationCorrectionAdmin(admin.ModelAdmin):
    list_display = ["annotation", "previous_label", "new_label", "corrected_by", "corrected_at"]
    list_select_related = ["annotation", "previous_label", "new_label", "corrected_by"]
    raw_id_fields = ["annotation"]
    readonly_fields = ["annotation", "previous_label", "new_label", "corrected_by", "corrected_at", "note"]


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


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invitations to a project, read-only: managers make and revoke them on the Members page."""

    list_display = ["email", "project", "role", "created_by", "created_at", "expires_at", "accepted_at"]
    list_filter = ["role", "project"]
    search_fields = ["email"]
    exclude = ["token_hash"]  # a digest, of no use to anyone reading it
    readonly_fields = [f.name for f in Invitation._meta.fields if f.name != "token_hash"]

    def has_add_permission(self, request) -> bool:
        return False  # the link is shown once, where it is made: on the Members page


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role"]
    list_filter = ["role", "project"]
    search_fields = ["user__username"]
    actions = ["issue_client_tokens"]

    @admin.action(description="Give the selected API clients a new token (shown once)")
    def issue_client_tokens(self, request, queryset):
        """New tokens for API client accounts (of one project alone, without password), shown on the page answered."""
        issued, skipped = [], 0
        for membership in queryset.filter(role=Membership.Role.CLIENT).select_related("project", "user"):
            try:
                client = api_client_get(membership.project, membership.user_id)
            except NotFound:
                skipped += 1
                continue
            issued.append((membership, api_client_token_issue(client=client)))
        skipped += queryset.exclude(role=Membership.Role.CLIENT).count()
        if not issued:
            self.message_user(
                request, "No token issued: select API client memberships whose account has no password and belongs "
                "to that project alone (people's accounts get their tokens on their API token page).", messages.WARNING,
            )
            return None
        response = TemplateResponse(request, "admin/annotations/membership/client_tokens.html", {
            **self.admin_site.each_context(request), "title": "New API client tokens", "issued": issued,
            "skipped": skipped, "opts": self.model._meta,
        })
        response["Cache-Control"] = "no-store"
        return response


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "item", "user", "status", "is_audit", "model_version", "created_at", "expires_at"]
    list_filter = ["status", "is_audit", "project"]
    search_fields = ["user__username", "item__external_id"]
    list_select_related = ["project", "item", "user"]
    raw_id_fields = ["item", "user"]
    readonly_fields = ["predicted_label", "predicted_confidence", "priority", "model_version"]


@admin.register(QueueScoring)
class QueueScoringAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "model_version", "strategy", "status", "items_scored", "items_total",
                    "chunks_done", "chunks_total", "started_at", "finished_at"]
    list_filter = ["status", "strategy", "project"]
    list_select_related = ["project"]
    # The chunk bitmap and ranges are packed bytes for the workers, not for reading.
    exclude = ["chunks_stored", "chunk_ranges"]
    readonly_fields = [f.name for f in QueueScoring._meta.fields if f.name not in ("chunks_stored", "chunk_ranges")]

    def has_add_permission(self, request) -> bool:
        return False  # scorings are planned by the learner, never typed in
