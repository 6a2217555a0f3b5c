"""The queue's state: leases of served items, scorings of the pool and each item's score."""
import uuid

from django.conf import settings
from django.db import models

from annotations.models.items import Item
from annotations.models.projects import Label, Project

SKIP_REASON_MAX_CHARS = 500


class Lease(models.Model):
    """An item served to one expert, reserved for them until it expires or is answered."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        RELEASED = "released", "Released"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="leases")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="leases")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="leases")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    is_audit = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    # What the queue knew when it served the item (the scoring it came from).
    model_version = models.PositiveIntegerField(null=True, blank=True)
    priority = models.FloatField(null=True, blank=True)
    predicted_label = models.ForeignKey(Label, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    predicted_confidence = models.FloatField(null=True, blank=True)
    skip_reason = models.CharField(
        max_length=SKIP_REASON_MAX_CHARS, blank=True, help_text="Why the expert skipped the item, if they said."
    )
    suggestion_withheld = models.BooleanField(
        default=False,
        help_text="The suggestion is not shown for this lease: every audit item, and a random share of the others "
                  "so that a missing suggestion does not give an audit item away.",
    )

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["item", "status", "expires_at"], name="lease_item_active"),
            models.Index(fields=["user", "project", "status"], name="lease_user_project"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "user"], condition=models.Q(status="active"), name="lease_one_active_per_item_user"
            ),
        ]

    def __str__(self) -> str:
        return f"lease {self.pk} of {self.item_id} to {self.user_id} ({self.status})"


class QueueScoring(models.Model):
    """One scoring of a project's unlabeled pool by one model version; the queue serves the newest complete one.

    ``model_version`` is the live version, whose uncertainty orders the queue and whose
    predictions are the suggestions; 0 is the seeding before any model exists (diverse items first).
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETE = "complete", "Complete"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="scorings")
    model_version = models.PositiveIntegerField()
    strategy = models.CharField(max_length=20, choices=Project.Strategy.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    items_total = models.PositiveIntegerField(default=0)
    items_scored = models.PositiveIntegerField(default=0)
    # The planned chunks' inclusive item id ranges as little-endian int64 (lo, hi) pairs (bytes, not
    # JSON: the queue reads this row for every item it serves), and one bit per chunk set when its
    # rows are stored: a redelivered chunk finds its bit set and stores nothing.
    chunk_ranges = models.BinaryField(default=bytes, blank=True)
    chunks_stored = models.BinaryField(default=bytes, blank=True)
    progressed_at = models.DateTimeField(
        null=True, blank=True, help_text="When a chunk was last stored, or its missing chunks were sent again."
    )
    head_floor = models.FloatField(
        null=True, blank=True,
        help_text="Set while only the head of a large pool (priorities from here up) is indexed for the queue.",
    )
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["project", "status", "-finished_at"], name="scoring_newest_complete")]

    def __str__(self) -> str:
        return f"scoring {self.pk} of {self.project_id} by v{self.model_version} ({self.status})"


class ItemScore(models.Model):
    """An item's queue priority and the model's suggestion under one scoring.

    On PostgreSQL the table is partitioned by scoring (the ``item_score_storage`` migration): each
    scoring writes an UNLOGGED partition of its own, indexed once after its last chunk, and dropped
    whole when a newer scoring completes (annotations.services.scoring). Rows of scorings that have no
    partition (made outside a planned scoring) land in the DEFAULT partition.
    """

    pk = models.CompositePrimaryKey("scoring", "item")
    # A derived, recomputable table written a million rows at a time: no database-level foreign
    # keys (their per-row checks and KEY SHARE locks on items cost more than the COPY itself) and
    # no single-column indexes (the primary key and the queue-order index serve every read).
    scoring = models.ForeignKey(
        QueueScoring, on_delete=models.CASCADE, related_name="scores", db_constraint=False, db_index=False
    )
    # DO_NOTHING: a deleted item's scores are never served (the queue joins items) and go with
    # their scoring's partition; a cascade would scan every partition, which has no item-first index.
    item = models.ForeignKey(
        Item, on_delete=models.DO_NOTHING, related_name="scores", db_constraint=False, db_index=False
    )
    priority = models.FloatField(help_text="Higher is asked sooner.")
    predicted_label = models.ForeignKey(
        Label, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    confidence = models.FloatField(null=True)

    class Meta:
        indexes = [models.Index(fields=["scoring", "-priority", "item"], name="score_queue_order")]
