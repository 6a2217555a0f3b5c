"""Projects, their members and their labels, with the bounds of what a manager may set."""
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
# Imported embeddings: at most this many numbers per vector (float32, so 32 KiB a row).
EMBEDDING_MAX_DIMENSIONS = 8192
LABEL_ORDER_MAX = 1_000_000
# The item metadata fields shown to experts while labeling: a short list of short names.
SHOWN_METADATA_FIELDS_MAX = 20
METADATA_FIELD_NAME_MAX_CHARS = 100


def validate_shown_metadata_fields(value: object) -> None:
    """Accept a list of at most 20 distinct, non-empty field names of at most 100 characters."""
    if not isinstance(value, list):
        raise ValidationError("List the metadata field names, e.g. [\"source\", \"date\"].")
    if len(value) > SHOWN_METADATA_FIELDS_MAX:
        raise ValidationError(f"Show at most {SHOWN_METADATA_FIELDS_MAX} metadata fields.")
    for name in value:
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("Each metadata field name must be a non-empty string.")
        if len(name) > METADATA_FIELD_NAME_MAX_CHARS:
            raise ValidationError(f"A metadata field name has at most {METADATA_FIELD_NAME_MAX_CHARS} characters.")
    if len(set(value)) != len(value):
        raise ValidationError("Name each metadata field once.")


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

    class Model(models.TextChoices):
        LOGISTIC = "logistic", "Logistic regression"
        LINEAR_SVM = "linear_svm", "Linear SVM, calibrated"
        HIST_GB = "hist_gb", "Histogram gradient boosting"
        RANDOM_FOREST = "random_forest", "Random forest"

    # What the model learns from and how (learner.ml.registry, learner.ml.training). A change of
    # either makes the next model a change of kind, which must prove itself before it goes live.
    featurizer = models.CharField(
        max_length=80, blank=True, default="",
        help_text="Key of the featurizer (learner.ml.registry); empty for the kind's default.",
    )
    model_kind = models.CharField(
        max_length=20, choices=Model.choices, default=Model.LOGISTIC,
        help_text="The scikit-learn classifier each retrain fits.",
    )
    embedding_field = models.CharField(
        max_length=64, default="embedding",
        help_text="Where imports find each item's vector: a JSON field, a CSV column holding a JSON list, or "
                  "CSV columns <name>_0, <name>_1, ….",
    )
    embedding_dim = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(EMBEDDING_MAX_DIMENSIONS)],
        help_text="Numbers per embedding, fixed by the first vector imported.",
    )
    features_error = models.TextField(blank=True, help_text="Why the last feature job failed, until one succeeds.")

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
    shown_metadata_fields = models.JSONField(
        default=list, blank=True, validators=[validate_shown_metadata_fields],
        help_text="Item metadata fields shown to experts while labeling, in this order (at most 20 names); "
                  "the rest of an item's metadata stays hidden from them.",
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
