"""Projects, labels, items, annotations, memberships, import jobs, leases and queue scores."""
import random
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


# Bounds of the settings a manager may change, the same on every database (SQLite would store any
# 64-bit integer): a lease past the year 9999 or a schedule every 4,000 years made every next-item
# request, or beat, fail with an overflow.
INSTRUCTIONS_MAX_CHARS = 20_000
LEASE_TTL_MAX_SECONDS = 24 * 3600
RETRAIN_EVERY_MAX = 1_000_000
RETRAIN_INTERVAL_MAX_MINUTES = 366 * 24 * 60
DEGRADATION_WINDOW_MAX = 100_000
DRIFT_THRESHOLD_MAX = 10.0
LABEL_ORDER_MAX = 1_000_000


class Project(models.Model):
    """A labeling project: what is labeled, with which labels, and how the model learns."""

    class Kind(models.TextChoices):
        TEXT = "text", "Text"
        IMAGE = "image", "Image"
        TABULAR = "tabular", "Tabular"

    class Strategy(models.TextChoices):
        LEAST_CONFIDENT = "least_confident", "Least confident"
        MARGIN = "margin", "Margin"
        ENTROPY = "entropy", "Entropy"
        RANDOM = "random", "Random"
        BATCH = "batch", "Diversity-aware batch (ranked batch)"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    instructions = models.TextField(
        blank=True, max_length=INSTRUCTIONS_MAX_CHARS, help_text="Guidelines shown to experts while labeling."
    )
    # Tabular projects: the ordered numeric feature columns, fixed by the first import.
    feature_names = models.JSONField(default=list, blank=True)

    query_strategy = models.CharField(max_length=20, choices=Strategy.choices, default=Strategy.MARGIN)
    audit_share = models.FloatField(
        default=0.10,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of served items drawn uniformly at random and used to evaluate models. Until the first "
                  "model ranks the queue, at least half are, so that it can go live within a few dozen labels.",
    )
    overlap = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="How many distinct experts label each item.",
    )
    lease_ttl_seconds = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(10), MaxValueValidator(LEASE_TTL_MAX_SECONDS)],
        help_text="How long a served item stays reserved for its expert (renewed while the page is open).",
    )
    show_suggestions = models.BooleanField(
        default=True, help_text="Show the model's suggestion to experts (off avoids anchoring)."
    )
    review_confidence = models.FloatField(
        default=0.9, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="An expert's label goes to review when the model suggested another label with at least this "
                  "confidence.",
    )

    # Retrain policy: each trigger is off when its field is empty/zero.
    retrain_every_n_labels = models.PositiveIntegerField(
        default=25, validators=[MaxValueValidator(RETRAIN_EVERY_MAX)],
        help_text="Retrain after this many new labels (0 turns the count trigger off).",
    )
    retrain_interval_minutes = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(RETRAIN_INTERVAL_MAX_MINUTES)],
        help_text="Retrain on this schedule (empty: no scheduled retrain).",
    )
    degradation_window = models.PositiveIntegerField(
        default=100, validators=[MaxValueValidator(DEGRADATION_WINDOW_MAX)],
        help_text="Latest audit labels on which the live model's accuracy is watched.",
    )
    degradation_floor = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Retrain when the live model's audit accuracy is confidently below this.",
    )
    degradation_margin = models.FloatField(
        default=0.05, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Retrain when audit accuracy is confidently this far below its accuracy at promotion.",
    )
    drift_enabled = models.BooleanField(default=True)
    drift_threshold = models.FloatField(
        default=0.2, validators=[MinValueValidator(0.0), MaxValueValidator(DRIFT_THRESHOLD_MAX)],
        help_text="Population stability index that counts as drift.",
    )

    # The promotion gate (learner.services.training.gate): the first model must beat the
    # majority-class baseline; after that, the project's promotion rule decides.
    class PromotionRule(models.TextChoices):
        NOT_WORSE = "not_worse", "Not worse: a routine retrain goes live unless the audit labels show it worse"
        BETTER = "better", "Better: every new model must prove a gain on the audit labels"

    promotion_rule = models.CharField(
        max_length=10, choices=PromotionRule.choices, default=PromotionRule.NOT_WORSE,
        help_text="How a retrained model replaces the live one. A change of kind (another algorithm, featurizer "
                  "or hyperparameters, or an older version) always needs 'better', an A/B experiment or a manager.",
    )
    gate_margin = models.FloatField(
        default=0.02, validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Under 'not worse': a retrain the test shows worse is kept out only when its audit accuracy is "
                  "also more than this below the live model's on the same items.",
    )
    gate_alpha = models.FloatField(default=0.05, validators=[MinValueValidator(0.0), MaxValueValidator(0.5)])
    gate_min_gain = models.FloatField(default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    gate_min_audit = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(100_000)],
        help_text="Audit labels a model needs to prove itself better than the live one (rule 'better', or a "
                  "change of kind).",
    )
    gate_min_audit_first = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(100_000)],
        help_text="Audit labels the first model, and a routine retrain under 'not worse', need before going live "
                  "(an exact test cannot pass on fewer than 5 at α = 0.05).",
    )
    gate_max_recall_drop = models.FloatField(
        default=0.05, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="A challenger is kept out when the lower (1 − α) confidence bound of some class's recall "
                  "drop exceeds this.",
    )

    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="labeling_projects"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in one project.

    An API client (a downstream service) stands outside the ladder annotator < reviewer < manager:
    it may predict and give feedback on its own predictions, and nothing else.
    """

    class Role(models.TextChoices):
        MANAGER = "manager", "Manager"
        REVIEWER = "reviewer", "Reviewer"
        ANNOTATOR = "annotator", "Annotator"
        CLIENT = "client", "API client"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user")]

    def __str__(self) -> str:
        return f"{self.user} · {self.role} · {self.project}"


class Label(models.Model):
    """One class experts can assign in a project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=100)
    shortcut = models.CharField(max_length=1, blank=True, help_text="Keyboard key that assigns this label.")
    color = models.CharField(max_length=7, default="#4c78a8", help_text="Hex colour, e.g. #4c78a8.")
    order = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(LABEL_ORDER_MAX)])

    class Meta:
        ordering = ["project", "order", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="label_unique_name"),
            models.UniqueConstraint(
                fields=["project", "shortcut"], condition=~models.Q(shortcut=""), name="label_unique_shortcut"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.color and (len(self.color) != 7 or not self.color.startswith("#")):
            raise ValidationError({"color": "Use a hex colour such as #4c78a8."})


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
