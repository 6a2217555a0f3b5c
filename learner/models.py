"""Model versions, training runs, stored item features and the live-model pointer."""
from django.conf import settings
from django.db import models

from annotations.models import Item, Project


class FeatureVector(models.Model):
    """An item's features, stored compactly so a whole pool loads as one matrix.

    Dense rows keep ``values`` as float32 bytes; sparse rows (text) also keep ``indices`` as
    int32 bytes, one CSR row each.
    """

    item = models.OneToOneField(Item, primary_key=True, on_delete=models.CASCADE, related_name="features")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    space = models.CharField(max_length=120, help_text="Featurizer name and version that produced this row.")
    values = models.BinaryField()
    indices = models.BinaryField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["project", "item"])]


class ModelVersion(models.Model):
    """One trained model of a project, with its artifact and its evaluation."""

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        LIVE = "live", "Live"
        RETIRED = "retired", "Retired"
        NOT_PROMOTED = "not_promoted", "Not promoted"
        REJECTED = "rejected", "Rejected"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField(help_text="1, 2, 3… per project.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    algorithm = models.CharField(max_length=200)
    hyperparameters = models.JSONField(default=dict, blank=True)
    feature_space = models.CharField(max_length=120)
    classes = models.JSONField(default=list, help_text="Label ids in the order of the model's outputs.")
    artifact_name = models.CharField(max_length=300)
    artifact_sha256 = models.CharField(max_length=64)
    artifact_removed_at = models.DateTimeField(
        null=True, blank=True, help_text="When retention removed the model file; the record, metrics and lineage stay."
    )
    label_snapshot_hash = models.CharField(max_length=64)
    labels_used = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    code_version = models.CharField(max_length=64, blank=True)
    query_strategy = models.CharField(
        max_length=20, blank=True, help_text="The project's query strategy when the version was trained (lineage)."
    )
    training_run = models.OneToOneField(
        "TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="model_version"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-number"]
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="model_version_unique_number")]

    def __str__(self) -> str:
        return f"{self.project} v{self.number}"

    @property
    def hyperparameters_text(self) -> str:
        """The pipeline's steps with all their parameters, e.g. ``scale: StandardScaler(copy=True, …)``."""
        steps = []
        for step, params in (self.hyperparameters or {}).items():
            if isinstance(params, dict):
                params = dict(params)
                name = params.pop("class", "")
                inner = ", ".join(f"{key}={value!r}" for key, value in sorted(params.items()))
                steps.append(f"{step}: {name}({inner})")
            else:
                steps.append(f"{step}={params!r}")
        return "; ".join(steps) or "none"


class TrainingRunManager(models.Manager):
    """Runs without their label ids, read only when asked for (``training_run_label_ids``): a keyframe
    holds ranges of every label's id, and pages list dozens of runs (the snapshot's sha256 stands for
    the ids there)."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().defer("label_lineage")


class TrainingRun(models.Model):
    """One retrain: which trigger fired and why, its timings, outcome and error."""

    class Trigger(models.TextChoices):
        COUNT = "count", "Label count"
        SCHEDULE = "schedule", "Schedule"
        DEGRADATION = "degradation", "Performance degradation"
        DRIFT = "drift", "Data drift"
        MANUAL = "manual", "Manual"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PROMOTED = "promoted", "Promoted"
        KEPT_CHAMPION = "kept", "Kept the champion"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    trigger = models.CharField(max_length=12, choices=Trigger.choices)
    evidence = models.JSONField(default=dict, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=20, blank=True)
    label_snapshot_hash = models.CharField(max_length=64, blank=True)
    label_lineage = models.JSONField(
        null=True, blank=True,
        help_text="The annotation ids it trained on, as ranges changed from a base run's (learner.ml.lineage).",
    )
    decision = models.JSONField(default=dict, blank=True, help_text="The gate's figures and reason.")
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per stage.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TrainingRunManager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One active run per project at a time.
            models.UniqueConstraint(
                fields=["project"], condition=models.Q(status__in=["queued", "running"]),
                name="training_run_one_active_per_project",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.project} ({self.trigger}, {self.status})"

    @property
    def verdict(self) -> str:
        """The gate's verdict: "live", "not_promoted" (no evidence either way), "rejected" (shown worse) or ""."""
        decision = self.decision if isinstance(self.decision, dict) else {}
        if decision.get("verdict"):
            return decision["verdict"]
        if "promote" not in decision:
            return ""
        # Decisions recorded before verdicts had words of their own.
        return "live" if decision["promote"] else "rejected" if decision.get("worse") else "not_promoted"

    @property
    def trigger_sentence(self) -> str:
        """Why this run was started, in a sentence a manager reads ("25 new labels since v3")."""
        e = self.evidence if isinstance(self.evidence, dict) else {}
        since = f"since v{e['live_version']}" if e.get("live_version") else "before any model was live"
        if e.get("summary"):
            sentence = str(e["summary"])
        elif self.trigger == self.Trigger.COUNT and "new_labels" in e:
            sentence = f"{_count(e['new_labels'], 'new label')} {since}"
        elif self.trigger == self.Trigger.SCHEDULE and "new_labels" in e:
            every = _count(e.get("interval_minutes"), "minute")
            sentence = f"Scheduled every {every}: {_count(e['new_labels'], 'new label')} {since}"
        elif self.trigger == self.Trigger.DEGRADATION and "accuracy" in e:
            sentence = (f"The audit accuracy of v{e.get('model_version')} fell to {e['accuracy']:.3f} on its latest "
                        f"{_count(e.get('audit_n'), 'audit label')}")
            if e.get("accuracy_at_promotion") is not None:
                sentence += f" ({e['accuracy_at_promotion']:.3f} when it went live)"
        elif self.trigger == self.Trigger.DRIFT:
            sentence = f"Data drift in the items imported since v{e.get('model_version')} went live"
        elif self.trigger == self.Trigger.MANUAL:
            who = e.get("requested_by") or (self.requested_by.get_username() if self.requested_by_id else "a manager")
            sentence = f"Requested by {who}" + (f": “{e['note']}”" if e.get("note") else "")
        else:
            sentence = self.get_trigger_display()
        findings = [f.get("summary") or f.get("kind", "") for f in e.get("findings") or [] if isinstance(f, dict)]
        if findings:
            sentence += ". Found while it ran: " + "; ".join(str(f) for f in findings if f)
        return sentence + ("" if sentence.endswith(".") else ".")


def _count(n, noun: str) -> str:
    """"1 new label", "25 new labels"."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


class LiveModel(models.Model):
    """The project's live-version pointer; moved only inside a swap transaction."""

    project = models.OneToOneField(Project, primary_key=True, on_delete=models.CASCADE, related_name="live_model")
    version = models.ForeignKey(ModelVersion, null=True, on_delete=models.PROTECT, related_name="+")
    changed_at = models.DateTimeField(auto_now=True)


class SwapHistory(models.Model):
    """Which version was live when, and why it changed."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="swap_history")
    from_version = models.ForeignKey(ModelVersion, null=True, on_delete=models.PROTECT, related_name="+")
    to_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()
    trigger = models.CharField(max_length=20, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "swap"
        verbose_name_plural = "swap history"

    @property
    def promoter(self) -> str:
        """Who or what made the version live, in words (reads ``actor``: select it with the swap)."""
        actor = self.actor.get_username() if self.actor_id else None
        if self.trigger == "rollback":
            return f"rolled back by {actor or 'unknown'}"
        if self.reason.startswith("Promoted by a manager"):
            return f"{actor or 'a manager'}, promoting anyway"
        if self.trigger == "ab-test":
            return "the A/B experiment's rule"
        trigger = dict(TrainingRun.Trigger.choices).get(self.trigger, self.trigger or "manual").lower()
        return f"the gate, after a {trigger} retrain" + (f" requested by {actor}" if actor else "")


class DriftCheck(models.Model):
    """One drift measurement of a project's recent items against the live model's training-time items."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="drift_checks")
    model_version = models.PositiveIntegerField(help_text="The live version the measurement was made for.")
    evidence = models.JSONField(default=dict, help_text="PSI figures, sample sizes and the threshold.")
    drifted = models.BooleanField(default=False, help_text="The largest PSI reached the project's threshold.")
    training_run = models.ForeignKey(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The retrain this check asked for, if any.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "-created_at"], name="drift_check_latest")]

    def __str__(self) -> str:
        return f"drift check {self.pk} of {self.project_id} ({'drift' if self.drifted else 'stable'})"


class Experiment(models.Model):
    """An A/B test of a challenger against the live champion, with its decision rule fixed at the start."""

    class Mode(models.TextChoices):
        SPLIT = "split", "Split traffic"
        SHADOW = "shadow", "Shadow"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        PROMOTED = "promoted", "Challenger promoted"
        KEPT = "kept", "Champion kept"
        STOPPED = "stopped", "Stopped early"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="experiments")
    champion = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    challenger = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    mode = models.CharField(max_length=10, choices=Mode.choices)
    traffic_share = models.FloatField(
        default=0.0, help_text="Share of API clients sent to the challenger (split), each by its account.")
    rule = models.JSONField(help_text="Test, α, minimum gain, looks, minimum sample and the power calculation.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    looks_done = models.PositiveIntegerField(default=0)
    results = models.JSONField(default=dict, blank=True, help_text="The figures of the latest evaluation.")
    decision = models.JSONField(default=dict, blank=True, help_text="Why and how it ended.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    stopped_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"], condition=models.Q(status="running"), name="experiment_one_running_per_project"
            ),
        ]

    def __str__(self) -> str:
        return f"experiment {self.pk} of {self.project_id} ({self.mode}, {self.status})"


class PredictionLog(models.Model):
    """One prediction served by /predict: which version answered, and the true label once known.

    Plain integer columns instead of foreign keys: rows are inserted a thousand at a time on the
    request path, and nothing here needs the database to check them.
    """

    id = models.BigAutoField(primary_key=True)
    project_id = models.BigIntegerField()
    experiment_id = models.BigIntegerField(null=True, blank=True)
    version_id = models.BigIntegerField(help_text="The version whose answer was returned.")
    arm = models.CharField(max_length=10, blank=True, help_text="champion or challenger, in an experiment.")
    label_id = models.BigIntegerField()
    confidence = models.FloatField()
    shadow_version_id = models.BigIntegerField(null=True, blank=True)
    shadow_label_id = models.BigIntegerField(null=True, blank=True)
    item_id = models.BigIntegerField(null=True, blank=True)
    client_id = models.BigIntegerField(
        null=True, blank=True, help_text="The user who asked (an API client, a manager or staff): the arm's key, and "
                                         "who may give the feedback.")
    true_label_id = models.BigIntegerField(null=True, blank=True)
    outcome_source = models.CharField(max_length=10, blank=True, help_text="feedback or expert (the item's label).")
    outcome_by_id = models.BigIntegerField(null=True, blank=True, help_text="Who gave the feedback (its latest value).")
    outcome_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # Only experiments' predictions are ever looked up; ordinary traffic pays for no index but the key.
            models.Index(fields=["experiment_id", "item_id"], name="prediction_experiment_item",
                         condition=models.Q(experiment_id__isnull=False)),
        ]


class PredictionCorrection(models.Model):
    """A change of a prediction's outcome after it was given: who, when, the label before and after.

    The prediction keeps one outcome (the latest), so a corrected prediction still counts once in
    its experiment.
    """

    prediction = models.ForeignKey(PredictionLog, on_delete=models.CASCADE, related_name="corrections")
    project_id = models.BigIntegerField()
    experiment_id = models.BigIntegerField(null=True, blank=True)
    label_before_id = models.BigIntegerField()
    source_before = models.CharField(max_length=10, help_text="feedback or expert.")
    label_after_id = models.BigIntegerField()
    corrected_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["experiment_id"], name="prediction_correction_exp",
                                condition=models.Q(experiment_id__isnull=False))]

    def __str__(self) -> str:
        return f"prediction {self.prediction_id}: {self.label_before_id} → {self.label_after_id}"
