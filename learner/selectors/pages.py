"""What the versions page, the dashboard and the labeling page's model panel show."""
from dataclasses import dataclass, field
from datetime import datetime

from django.core.paginator import Paginator
from django.db.models import Count, F, IntegerField, OuterRef, Q, Subquery, Window
from django.db.models.functions import Coalesce, Mod, RowNumber

from learner.models import DriftCheck, LiveModel, ModelVersion, SwapHistory, TrainingRun

STAGES = ["snapshot", "train", "evaluate", "gate", "swap"]
# The versions page: version rows per page, and the live spans its timeline shows (the newest).
VERSIONS_PER_PAGE = 50
TIMELINE_SPANS = 50
# The learning curve draws at most this many evaluated versions evenly spread, plus the newest and the live one.
# Each point adds to the drawing's time and the page's size (100 points: 0.25 s and 100 kB of SVG; 200: 0.5 s and
# 180 kB), and the curve is drawn again after every retrain, as its data changes.
CURVE_MAX_POINTS = 100


@dataclass
class VersionRow:
    """A model version with its training run, the swaps that made it live and its training time."""

    version: ModelVersion
    run: TrainingRun | None
    promotions: list[SwapHistory] = field(default_factory=list)

    @property
    def training_seconds(self) -> float | None:
        timings = self.run.timings if self.run else {}
        return round(sum(timings.values()), 2) if timings else None

    @property
    def stage_timings(self) -> list[tuple[str, float]]:
        """Seconds per stage, in the order the stages run."""
        timings = self.run.timings if self.run else {}
        return [(stage, timings[stage]) for stage in STAGES if stage in timings]

    @property
    def metrics(self) -> dict:
        return self.version.metrics or {}


@dataclass
class LiveSpan:
    """One stretch of time during which a version was live."""

    number: int
    previous: int | None
    start: datetime
    end: datetime | None
    swap: SwapHistory


def model_versions_overview(project_id: int, page_number: str | int | None = 1) -> dict:
    """One page of the project's versions (newest first) with runs and promotions, the live version wherever it
    is, the newest live spans, the latest runs and the versions the learning curve draws.

    Seven statements whatever the number of versions or swaps: the versions' count, the page with
    its runs, the live version with its run and position, the promotions of the versions shown,
    the newest swaps with their total, the latest runs, and the curve's versions. A page number
    that is no number or below 1 shows the first page, one past the end the last.
    """
    versions = (
        ModelVersion.objects.filter(project_id=project_id)
        .select_related("training_run", "training_run__requested_by").defer("training_run__label_lineage")
        .order_by("-number")
    )
    page = Paginator(versions, VERSIONS_PER_PAGE).get_page(_at_least_one(page_number))
    rows = {v.pk: VersionRow(v, v.training_run) for v in page}
    pointer = _live_pointer(project_id)
    live = pointer.version if pointer is not None else None
    # The live version stays findable from every page: its row is shown apart when this page lacks it.
    live_row = VersionRow(live, live.training_run) if live is not None and live.pk not in rows else None
    shown = {**rows, **({live.pk: live_row} if live_row else {})}
    for swap in (
        SwapHistory.objects.filter(to_version_id__in=list(shown)).select_related("actor").order_by("created_at", "pk")
    ):
        shown[swap.to_version_id].promotions.append(swap)
    timeline, timeline_total = _live_spans(project_id)
    curve_versions, curve_total = learning_curve_versions(project_id, live.pk if live is not None else None)
    return {
        "rows": list(rows.values()),
        "page": page,
        "live": live,
        "live_row": live_row,
        "live_page": pointer.newer // VERSIONS_PER_PAGE + 1 if live is not None else None,
        "timeline": timeline,
        "timeline_total": timeline_total,
        "runs": list(TrainingRun.objects.filter(project_id=project_id).select_related("requested_by")
                     .order_by("-created_at")[:20]),
        "curve_versions": curve_versions,
        "curve_total": curve_total,
    }


def _at_least_one(page_number: str | int | None) -> str | int | None:
    """The page number asked for, or 1 for a number below 1 (Paginator.get_page would show the last page)."""
    try:
        return 1 if int(page_number) < 1 else page_number
    except (TypeError, ValueError):
        return page_number  # no number: get_page shows the first page


def _live_pointer(project_id: int) -> LiveModel | None:
    """The live pointer with its version and run, and ``newer``: how many of the project's versions are newer."""
    newer = (
        ModelVersion.objects.filter(project_id=OuterRef("project_id"), number__gt=OuterRef("version__number"))
        .order_by().values("project_id").annotate(n=Count("pk")).values("n")
    )
    return (
        LiveModel.objects.filter(project_id=project_id, version__isnull=False)
        .select_related("version__training_run__requested_by").defer("version__training_run__label_lineage")
        .annotate(newer=Coalesce(Subquery(newer), 0))
        .first()
    )


def _live_spans(project_id: int) -> tuple[list[LiveSpan], int]:
    """The newest TIMELINE_SPANS stretches of live time, newest first, and how many there are in all."""
    swaps = list(
        SwapHistory.objects.filter(project_id=project_id)
        .select_related("actor")
        # Only the numbers of the versions, not their rows (metrics hold confusion matrices).
        .annotate(to_number=F("to_version__number"), from_number=F("from_version__number"),
                  total=Window(Count("pk")))
        .order_by("-created_at", "-pk")[:TIMELINE_SPANS]
    )
    spans, end = [], None
    for swap in swaps:  # each span ends where the next newer one starts
        spans.append(LiveSpan(swap.to_number, swap.from_number, swap.created_at, end, swap))
        end = swap.created_at
    return spans, swaps[0].total if swaps else 0


def learning_curve_versions(project_id: int, live_id: int | None) -> tuple[list[ModelVersion], int]:
    """The evaluated versions the learning curve draws, oldest first, and how many versions are evaluated.

    All of them up to CURVE_MAX_POINTS; beyond, every k-th from the first (k the smallest step that
    keeps at most CURVE_MAX_POINTS), plus the newest and the live one. One statement, reading only
    the fields the curve draws.
    """
    ranked = ModelVersion.objects.filter(project_id=project_id, metrics__has_key="accuracy_ci").annotate(
        rank=Window(RowNumber(), order_by=F("number").asc()), total=Window(Count("pk")),
    )
    step = (F("total") + (CURVE_MAX_POINTS - 1)) / CURVE_MAX_POINTS
    drawn = list(
        ranked.annotate(offset=Mod(F("rank") - 1, step, output_field=IntegerField()))
        .filter(Q(offset=0) | Q(rank=F("total")) | Q(pk=live_id or 0))
        .only("id", "number", "labels_used", "metrics")
        .order_by("number")
    )
    return drawn, drawn[0].total if drawn else 0


def model_version_row(project_id: int, number: int) -> VersionRow | None:
    """One version with its run and the swaps that made it live; None if the project has no such version."""
    version = (
        ModelVersion.objects.filter(project_id=project_id, number=number)
        .select_related("training_run", "training_run__requested_by").defer("training_run__label_lineage")
        .first()
    )
    if version is None:
        return None
    swaps = SwapHistory.objects.filter(to_version=version).select_related("actor").order_by("created_at", "pk")
    return VersionRow(version, version.training_run, list(swaps))


@dataclass
class ModelStatus:
    """The live version and the latest finished run, as the labeling page's model panel shows them."""

    live: ModelVersion | None
    latest_run: TrainingRun | None
    active_run: TrainingRun | None


def model_status(project_id: int) -> ModelStatus:
    """The project's live version, its latest finished training run and the run under way (three reads)."""
    live = LiveModel.objects.filter(project_id=project_id).select_related("version").first()
    runs = TrainingRun.objects.filter(project_id=project_id).select_related("requested_by", "model_version")
    return ModelStatus(
        live.version if live is not None else None,
        runs.filter(finished_at__isnull=False).order_by("-finished_at").first(),
        runs.filter(status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]).first(),
    )


def drift_check_latest(project_id: int) -> DriftCheck | None:
    """The project's latest drift measurement, with the retrain it asked for."""
    return (DriftCheck.objects.filter(project_id=project_id).select_related("training_run")
            .defer("training_run__label_lineage").order_by("-created_at").first())


def training_runs_recent(project_id: int, limit: int = 10) -> list[TrainingRun]:
    """The project's latest training runs, each with whoever asked for it and the version it trained."""
    return list(
        TrainingRun.objects.filter(project_id=project_id)
        .select_related("requested_by", "model_version")
        .order_by("-created_at")[:limit]
    )


def training_runs_active(project_id: int) -> list[TrainingRun]:
    """The project's queued or running training runs (at most one, by constraint)."""
    return list(
        TrainingRun.objects.filter(
            project_id=project_id, status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
        ).order_by("created_at")
    )

