"""Reads of model versions, the live model and what serves predictions, experiments, and a live model's staleness."""
import json
from dataclasses import dataclass

from django.db import connection

from annotations.models import Label
from labelhub import rows
from learner.ml import lineage
from learner.models import DriftCheck, Experiment, LiveModel, ModelVersion, SwapHistory, TrainingRun

from .features import project_featurizer


def model_version_by_number(project_id: int, number: int) -> ModelVersion:
    """The project's model version with this number."""
    return ModelVersion.objects.get(project_id=project_id, number=number)


def model_version_live(project_id: int) -> ModelVersion | None:
    """The project's live version (one indexed read: processes notice swaps by asking each time)."""
    return (
        ModelVersion.objects.filter(pk=LiveModel.objects.filter(project_id=project_id).values("version_id")[:1])
        .first()
    )


@dataclass(frozen=True)
class VersionListing:
    """One page of a project's versions and of its swap history, newest first, with how many there are in all."""

    live: int | None
    versions: list[ModelVersion]
    versions_total: int
    history: list[SwapHistory]
    history_total: int


def model_versions_list(
    project_id: int, *, limit: int, before: int | None = None, history_before: int | None = None
) -> VersionListing:
    """The live version's number, the newest ``limit`` versions numbered below ``before`` and the newest ``limit``
    swaps with an id below ``history_before`` (each bound only if given), and the totals: five statements."""
    live = LiveModel.objects.filter(project_id=project_id).values_list("version__number", flat=True).first()
    versions = ModelVersion.objects.filter(project_id=project_id)
    page = versions.filter(number__lt=before) if before is not None else versions
    swaps = SwapHistory.objects.filter(project_id=project_id)
    history = swaps.filter(pk__lt=history_before) if history_before is not None else swaps
    return VersionListing(
        live=live,
        versions=list(
            page.select_related("training_run").defer("training_run__label_lineage").order_by("-number")[:limit]
        ),
        versions_total=versions.count(),
        # Swaps are numbered in the order they were made (one at a time per project, under the pointer's lock);
        # of the versions they name, only the numbers.
        history=list(
            history.select_related("from_version", "to_version", "actor")
            .only("id", "reason", "trigger", "created_at", "from_version__number", "to_version__number",
                  "actor__username")
            .order_by("-pk")[:limit]
        ),
        history_total=swaps.count(),
    )


def projects_with_live_model() -> list[int]:
    """Ids of projects that have a live model version."""
    return list(LiveModel.objects.filter(version__isnull=False).values_list("project_id", flat=True))


@dataclass(frozen=True)
class Target:
    """Who answers a project's predictions now: the live version and the running experiment, if any."""

    live: ModelVersion | None
    experiment: Experiment | None
    challenger: ModelVersion | None
    label_names: dict[int, str]


_JSON_OBJECT_AGG = {"postgresql": "json_object_agg", "sqlite": "json_group_object"}


def predict_target(project_id: int) -> Target:
    """Read the live version, the running experiment (with its challenger) and the label names in one statement."""
    q = rows.qn
    mv, ex, lb = q(ModelVersion._meta.db_table), q(Experiment._meta.db_table), q(Label._meta.db_table)
    row = rows.fetch_one(
        f"SELECT {rows.columns(ModelVersion, 'v')}, {rows.columns(Experiment, 'e')}, {rows.columns(ModelVersion, 'x')},"
        f" (SELECT {_JSON_OBJECT_AGG[connection.vendor]}(b.id, b.name) FROM {lb} b WHERE b.project_id = p.id)"
        f" FROM (SELECT CAST(%s AS BIGINT) AS id) p LEFT JOIN {q(LiveModel._meta.db_table)} l ON l.project_id = p.id"
        f" LEFT JOIN {mv} v ON v.id = l.version_id"
        # An experiment whose champion is no longer live is over; the next evaluation records it.
        f" LEFT JOIN {ex} e ON e.project_id = p.id AND e.status = %s AND e.champion_id = l.version_id"
        f" LEFT JOIN {mv} x ON x.id = e.challenger_id",
        [project_id, Experiment.Status.RUNNING],
    )
    live, end = rows.build(ModelVersion, row)
    experiment, end = rows.build(Experiment, row, end)
    challenger, end = rows.build(ModelVersion, row, end)
    names = row[end]
    if isinstance(names, str):
        names = json.loads(names)
    return Target(live, experiment, challenger, {int(k): v for k, v in (names or {}).items()})


def experiment_challengers(project_id: int, live: ModelVersion | None) -> list[ModelVersion]:
    """The versions an experiment may test against the live one, newest first: not live, file kept, and trained
    on the live one's features or on those the project computes now (a new featurizer's candidate)."""
    if live is None:
        return []
    spaces = {live.feature_space}
    try:
        spaces.add(project_featurizer(project_id).space)
    except ValueError:  # FeaturizeError, PluginError: the project's featurizer cannot be built now
        pass
    return list(
        ModelVersion.objects.filter(project_id=project_id, feature_space__in=spaces, artifact_removed_at__isnull=True)
        .exclude(pk=live.pk).order_by("-number").only("id", "number", "status", "algorithm", "metrics", "created_at")
    )


def experiments_running(project_id: int) -> list[int]:
    """Ids of the project's running experiments."""
    return list(Experiment.objects.filter(project_id=project_id, status=Experiment.Status.RUNNING).values_list("pk", flat=True))


# Why a live model is known to be stale, by the kind of finding (drift first when both).
STALE_BECAUSE = {
    TrainingRun.Trigger.DRIFT: "data drift was found",
    TrainingRun.Trigger.DEGRADATION: "its audit accuracy fell",
}


def live_model_stale_reason(project_id: int, live_number: int, run: TrainingRun | None = None) -> str:
    """Why the live version is known to be stale, in words, or "" if nothing says so.

    Stale: the run itself was started by drift or degradation, or such a finding was recorded
    against it, or a drift check found drift while this version was live, or a degradation
    retrain was asked for against it.
    """
    kinds = set()
    if run is not None:
        findings = (run.evidence or {}).get("findings") or []
        kinds = {run.trigger} | {finding.get("kind") for finding in findings if isinstance(finding, dict)}
    if TrainingRun.Trigger.DRIFT not in kinds and DriftCheck.objects.filter(
        project_id=project_id, model_version=live_number, drifted=True
    ).exists():
        kinds.add(TrainingRun.Trigger.DRIFT)
    if not kinds & set(STALE_BECAUSE) and TrainingRun.objects.filter(
        project_id=project_id, trigger=TrainingRun.Trigger.DEGRADATION, evidence__model_version=live_number
    ).exists():
        kinds.add(TrainingRun.Trigger.DEGRADATION)
    for kind, because in STALE_BECAUSE.items():
        if kind in kinds:
            return because
    return ""


def _lineage_chain(project_id: int, run_id: int) -> list[dict] | None:
    """The stored label ids of run ``run_id`` and of its bases down to a keyframe, that first; None if one is missing.

    One read: a run's base is the run with stored ids just before it, so its chain is among the
    latest ``MAX_CHAIN`` + 1 such runs.
    """
    rows = dict(
        TrainingRun.objects.filter(project_id=project_id, pk__lte=run_id, label_lineage__isnull=False)
        .order_by("-pk").values_list("pk", "label_lineage")[: lineage.MAX_CHAIN + 1]
    )
    chain, current = [], run_id
    while current is not None:
        link = rows.get(current)
        if link is None:
            return None
        chain.append(link)
        current = link["base"]
    return chain[::-1]


def training_run_label_ids(run: TrainingRun) -> list[int] | None:
    """The annotation ids the run trained on, sorted; None before its snapshot (or if a base run is missing)."""
    chain = _lineage_chain(run.project_id, run.pk)
    return lineage.replayed(chain) if chain else None


def training_run_lineage_next(project_id: int, run_id: int, annotation_ids: list[int]) -> dict:
    """The stored form of a new run's ``annotation_ids``: the change from the project's latest run with
    stored ids before it, or the ids whole (``lineage.stored`` says when)."""
    base = (
        TrainingRun.objects.filter(project_id=project_id, pk__lt=run_id, label_lineage__isnull=False)
        .order_by("-pk").values_list("pk", flat=True).first()
    )
    chain = _lineage_chain(project_id, base) if base is not None else None
    if not chain:
        return lineage.stored(annotation_ids)
    return lineage.stored(annotation_ids, base_id=base, base_ids=lineage.replayed(chain), chain=len(chain) - 1)
