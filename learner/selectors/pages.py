"""What the versions page, the dashboard and the labeling page's model panel show."""
from dataclasses import dataclass, field
from datetime import datetime

from learner.models import DriftCheck, LiveModel, ModelVersion, SwapHistory, TrainingRun

STAGES = ["snapshot", "train", "evaluate", "gate", "swap"]


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


def model_versions_overview(project_id: int) -> dict:
    """Every version of the project with its run and promotions, the live timeline and the live version.

    Four statements whatever the number of versions: versions with their runs, the swaps, the
    live pointer, and the latest runs.
    """
    versions = list(
        ModelVersion.objects.filter(project_id=project_id)
        .select_related("training_run", "training_run__requested_by")
        .order_by("-number")
    )
    rows = {v.pk: VersionRow(v, v.training_run) for v in versions}
    numbers = {v.pk: v.number for v in versions}
    swaps = list(SwapHistory.objects.filter(project_id=project_id).select_related("actor").order_by("created_at", "pk"))
    timeline: list[LiveSpan] = []
    for i, swap in enumerate(swaps):
        if swap.to_version_id in rows:
            rows[swap.to_version_id].promotions.append(swap)
        end = swaps[i + 1].created_at if i + 1 < len(swaps) else None
        timeline.append(LiveSpan(numbers.get(swap.to_version_id, 0), numbers.get(swap.from_version_id), swap.created_at,
                                 end, swap))
    live_id = LiveModel.objects.filter(project_id=project_id).values_list("version_id", flat=True).first()
    return {
        "rows": list(rows.values()),
        "live": rows[live_id].version if live_id in rows else None,
        "timeline": timeline[::-1],  # newest first
        "runs": list(TrainingRun.objects.filter(project_id=project_id).select_related("requested_by")
                     .order_by("-created_at")[:20]),
    }


def model_version_row(project_id: int, number: int) -> VersionRow | None:
    """One version with its run and the swaps that made it live; None if the project has no such version."""
    version = (
        ModelVersion.objects.filter(project_id=project_id, number=number)
        .select_related("training_run", "training_run__requested_by")
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
    return DriftCheck.objects.filter(project_id=project_id).select_related("training_run").order_by("-created_at").first()


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

