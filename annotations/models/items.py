"""Items to label, the experts' annotations on them and reviewers' corrections of those."""
import random

from django.conf import settings
from django.db import models

from annotations.models.projects import Label, Project


def random_key() -> float:
    """A uniform draw in [0, 1) for an item's random-order key."""
    return random.random()


def item_image_path(item: "Item", filename: str) -> str:
    return f"items/{item.project_id}/{filename}"


class Item(models.Model):
    """One thing to label: a text, an image or a numeric row."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="items")
    external_id = models.CharField(max_length=255)
    text = models.TextField(blank=True)
    image = models.ImageField(upload_to=item_image_path, blank=True, max_length=300)
    thumbnail = models.ImageField(upload_to=item_image_path, blank=True, max_length=300)
    values = models.JSONField(null=True, blank=True, help_text="Numeric feature values of a tabular row.")
    metadata = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64, help_text="sha256 of the item's content.")
    import_job = models.ForeignKey("ImportJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Queue state, kept on the row that every lease locks, so that checks made under that lock
    # see every committed lease and label.
    label_count = models.PositiveIntegerField(default=0, help_text="Annotations stored for this item.")
    queue_done = models.BooleanField(default=False, help_text="Labeled by as many experts as the overlap asks.")
    random_key = models.FloatField(default=random_key, help_text="Uniform key for audit and random draws.")
    # Review: a reviewer's final label overrides the experts' majority in training and export.
    resolved_label = models.ForeignKey(
        "Label", null=True, blank=True, on_delete=models.PROTECT, related_name="resolved_items",
        help_text="The final label a reviewer chose; training and export use it instead of the majority.",
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="resolved_items"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Gold: a known answer that measures each expert's accuracy (experts cannot tell gold items apart).
    gold_label = models.ForeignKey(
        "Label", null=True, blank=True, on_delete=models.PROTECT, related_name="gold_items",
        help_text="The known correct label of a gold item; experts' labels on it measure their accuracy.",
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "external_id"], name="item_unique_external_id"),
        ]
        indexes = [
            models.Index(fields=["project", "queue_done", "random_key"], name="item_queue_random"),
            # Progress counts labeled and done items without reading the unlabeled pool.
            models.Index(fields=["project", "queue_done"], condition=models.Q(label_count__gt=0), name="item_labeled"),
            # The items browser: newest first within a project, and its gold and resolved filters.
            # (PostgreSQL also gets a GIN index on metadata and trigram indexes for search: migration
            # item_browse_indexes.)
            models.Index(fields=["project", "id"], name="item_project_newest"),
            models.Index(fields=["project"], condition=models.Q(gold_label__isnull=False), name="item_gold"),
            models.Index(fields=["project"], condition=models.Q(resolved_label__isnull=False), name="item_resolved"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}:{self.external_id}"


class Annotation(models.Model):
    """One expert's label for one item, with what the live model said at that moment."""

    class Source(models.TextChoices):
        QUEUE = "queue", "Labeled in the queue"
        IMPORT = "import", "Imported with the data"
        API = "api", "Submitted over the API"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="annotations")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotations")
    label = models.ForeignKey(Label, on_delete=models.PROTECT, related_name="annotations")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.QUEUE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    is_audit = models.BooleanField(default=False)
    # The live model at labeling time (a ModelVersion number of learner, kept as plain values
    # so that this app does not depend on learner).
    model_version = models.PositiveIntegerField(null=True, blank=True)
    predicted_label = models.ForeignKey(
        Label, null=True, blank=True, on_delete=models.SET_NULL, related_name="predicted_in"
    )
    predicted_confidence = models.FloatField(null=True, blank=True)
    lease = models.OneToOneField(
        "Lease", null=True, blank=True, on_delete=models.SET_NULL, related_name="annotation",
        help_text="The lease this label was submitted on; a retried submit finds it and stores nothing new.",
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="annotation_unique_item_annotator"),
        ]
        indexes = [
            models.Index(fields=["updated_at"]),
            # An expert's latest labels: undo and today's count.
            models.Index(fields=["annotator", "created_at"], name="annotation_user_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.item_id} → {self.label_id} by {self.annotator_id}"


class AnnotationCorrection(models.Model):
    """A reviewer's change of one expert's label: who, when, and the label before and after."""

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="corrections")
    corrected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="annotation_corrections"
    )
    corrected_at = models.DateTimeField(auto_now_add=True)
    previous_label = models.ForeignKey(Label, on_delete=models.PROTECT, related_name="+")
    new_label = models.ForeignKey(Label, on_delete=models.PROTECT, related_name="+")
    note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["corrected_at", "id"]

    def __str__(self) -> str:
        return f"annotation {self.annotation_id}: {self.previous_label_id} → {self.new_label_id}"


class ItemEmbedding(models.Model):
    """An item's imported vector, as float32 bytes; apart from the item, so that reading items never loads it."""

    item = models.OneToOneField(Item, primary_key=True, on_delete=models.CASCADE, related_name="embedding")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    vector = models.BinaryField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["project", "item"], name="embedding_project_item")]

    def __str__(self) -> str:
        return f"embedding of item {self.item_id}"
