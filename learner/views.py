"""The project's models, dashboard and experiments pages: versions, runs, jobs, A/B tests; retrain, swap, stop."""
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Page
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotations import selectors as annotation_selectors
from annotations.imports import selectors as import_selectors
from annotations.models import ImportJob
from annotations.view_helpers import project_or_404
from labelhub.api import DomainError

from . import charts, selectors
from .experiment_apis import ExperimentListApi
from .models import Experiment, ModelVersion
from .services import experiments as experiment_services
from .services import models as model_services
from .services import triggers

# Days of labels the dashboard plots.
DASHBOARD_DAYS = 30


def _is_manager(request: HttpRequest, project) -> bool:
    role = getattr(project, "viewer_role", None) or annotation_selectors.membership_role(request.user, project)
    return role is not None and annotation_selectors.ROLE_RANK[role] >= annotation_selectors.ROLE_RANK["manager"]


def _label_names(project) -> dict[int, str]:
    return {label.pk: label.name for label in annotation_selectors.project_labels(project)}


def _per_class(version: ModelVersion, names: dict[int, str]) -> list[dict]:
    """Precision, recall and support per class of the version's audit evaluation, in the model's class order."""
    rows = []
    for label_id, figures in (version.metrics.get("per_class") or {}).items():
        row = {"label": names.get(int(label_id), f"label {label_id}"), **figures}
        if not figures.get("support"):
            # No audit item of this class: its recall is undefined, not zero.
            row["recall"] = None
            row["precision"] = figures["precision"] if figures["precision"] else None
        rows.append(row)
    return rows


def _page_notice(asked: str | None, page: Page) -> str:
    """Why the page shown is not the one asked for, in words, or "" when it is."""
    if not asked:
        return ""
    try:
        if int(asked) == page.number:
            return ""
    except ValueError:
        pass
    shown = asked if len(asked) <= 20 else f"{asked[:20]}…"
    return f"There is no page “{shown}”: this is page {page.number} of {page.paginator.num_pages}."


@login_required
@require_GET
def project_models(request: HttpRequest, project_id: int) -> HttpResponse:
    """A page of versions with status, trigger, metrics, lineage and who promoted them, the live one always; the
    newest of the timeline and the learning curve."""
    project = project_or_404(request, project_id, "reviewer")
    asked = request.GET.get("page")
    overview = selectors.model_versions_overview(project.pk, asked)
    live = overview["live"]
    return render(request, "learner/models.html", {
        "project": project,
        **overview,
        "page_notice": _page_notice(asked, overview["page"]),
        # The compare form offers the versions on this page, and the live one wherever it is.
        "compare_rows": [*([overview["live_row"]] if overview["live_row"] else []), *overview["rows"]],
        "curve_svg": charts.learning_curve(overview["curve_versions"], live.pk if live else None),
        "curve_max_points": selectors.CURVE_MAX_POINTS,
        "is_manager": _is_manager(request, project),
    })


@login_required
@require_GET
def model_version_detail(request: HttpRequest, project_id: int, number: int) -> HttpResponse:
    """One version: its evaluation with confusion matrix and per-class precision/recall, its gate decision and lineage."""
    project = project_or_404(request, project_id, "reviewer")
    row = selectors.model_version_row(project.pk, number)
    if row is None:
        raise Http404(f"This project has no model version {number}.")
    names = _label_names(project)
    return render(request, "learner/model_version.html", {
        "project": project,
        "row": row,
        "v": row.version,
        "per_class": _per_class(row.version, names),
        "confusion_svg": charts.confusion_matrix(row.version, names),
        "is_manager": _is_manager(request, project),
    })


def _version_number(value: str | None, field: str) -> int:
    try:
        number = int(value or "")
    except ValueError:
        raise DomainError(f"Choose version {field} from the list (got {value!r}).") from None
    if not 0 < number < 2**31:
        raise DomainError(f"Version {field} must be a version number such as 1 or 2 (got {value!r}).")
    return number


@login_required
@require_GET
def model_versions_compare(request: HttpRequest, project_id: int) -> HttpResponse:
    """Two versions side by side: metrics, lineage, per-class precision/recall and confusion matrices."""
    project = project_or_404(request, project_id, "reviewer")
    numbers = list(ModelVersion.objects.filter(project=project).order_by("-number").values_list("number", flat=True))
    context = {"project": project, "numbers": numbers, "a": request.GET.get("a", ""), "b": request.GET.get("b", ""),
               "is_manager": _is_manager(request, project)}
    if "a" not in request.GET and "b" not in request.GET:
        return render(request, "learner/compare.html", context)  # the form alone
    try:
        a, b = _version_number(request.GET.get("a"), "A"), _version_number(request.GET.get("b"), "B")
        rows = [selectors.model_version_row(project.pk, n) for n in (a, b)]
        for n, row in zip((a, b), rows):
            if row is None:
                raise DomainError(f"This project has no model version {n}.")
    except DomainError as exc:
        return render(request, "learner/compare.html", {**context, "error": exc.message}, status=400)
    names = _label_names(project)
    left, right = rows
    per_class = []
    left_classes = {r["label"]: r for r in _per_class(left.version, names)}
    right_classes = {r["label"]: r for r in _per_class(right.version, names)}
    for label in [*left_classes, *(k for k in right_classes if k not in left_classes)]:
        la, rb = left_classes.get(label), right_classes.get(label)
        delta = rb["recall"] - la["recall"] if la and rb and None not in (la["recall"], rb["recall"]) else None
        per_class.append({"label": label, "a": la, "b": rb, "recall_delta": delta})
    return render(request, "learner/compare.html", {
        **context, "a": a, "b": b, "left": left, "right": right, "per_class": per_class,
        "left_svg": charts.confusion_matrix(left.version, names),
        "right_svg": charts.confusion_matrix(right.version, names),
    })


def _jobs(project) -> dict:
    """The project's running imports, scorings and training runs, each with its progress in percent."""
    imports = []
    for job in import_selectors.import_jobs_active(project.pk):
        progress = import_selectors.import_job_progress(job)
        if job.status in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING):
            percent = round(100 * progress["bytes"] / progress["total"]) if progress and progress["total"] else None
            phase = "reading rows"
        else:
            percent = round(100 * job.features_done / job.features_total) if job.features_total else None
            phase = "computing features"
        imports.append({"job": job, "phase": phase, "percent": None if percent is None else min(100, percent)})
    scorings = [
        {"scoring": s, "percent": round(100 * s.items_scored / s.items_total) if s.items_total else None}
        for s in annotation_selectors.scorings_running(project.pk)
    ]
    runs = []
    for run in selectors.training_runs_active(project.pk):
        done = selectors.STAGES.index(run.stage) if run.stage in selectors.STAGES else 0
        runs.append({"run": run, "percent": round(100 * done / len(selectors.STAGES))})
    return {"imports": imports, "scorings": scorings, "runs": runs, "running": bool(imports or scorings or runs)}


@login_required
@require_GET
def project_dashboard(request: HttpRequest, project_id: int) -> HttpResponse:
    """Counts, labels per day per expert, queue freshness, drift, recent trigger decisions and running jobs."""
    project = project_or_404(request, project_id, "reviewer")
    days, per_expert = annotation_selectors.labels_per_day(project.pk, days=DASHBOARD_DAYS)
    live = selectors.model_version_live(project.pk)
    scoring = annotation_selectors.scoring_current(project.pk)
    distribution = annotation_selectors.label_distribution(project.pk)
    return render(request, "learner/dashboard.html", {
        "distribution": distribution,
        "distribution_svg": charts.label_distribution(distribution["labels"]),
        "project": project,
        "counts": annotation_selectors.project_dashboard_counts(project.pk),
        "per_day_svg": charts.labels_per_day(days, per_expert),
        "per_expert_totals": {name: sum(counts) for name, counts in per_expert.items()},
        "days": DASHBOARD_DAYS,
        "live": live,
        "scoring": scoring,
        "scoring_stale": live is not None and (scoring is None or scoring.model_version != live.number),
        "drift": selectors.drift_check_latest(project.pk),
        "runs": selectors.training_runs_recent(project.pk),
        "jobs": _jobs(project),
        "is_manager": _is_manager(request, project),
    })


@login_required
@require_GET
def project_dashboard_jobs(request: HttpRequest, project_id: int) -> HttpResponse:
    """The running-jobs panel alone, which the dashboard polls while something runs."""
    project = project_or_404(request, project_id, "reviewer")
    return render(request, "learner/_jobs.html", {"project": project, "jobs": _jobs(project)})


@login_required
@require_GET
def project_model_status(request: HttpRequest, project_id: int) -> HttpResponse:
    """The live model and the latest retrain's verdict, in words: the panel the labeling page loads."""
    project = project_or_404(request, project_id, "annotator")
    return render(request, "learner/_model_status.html", {"project": project, "status": selectors.model_status(project.pk)})


@login_required
@require_POST
def project_retrain(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, "manager")
    run = triggers.manual_trigger(project.pk, request.user, request.POST.get("note", "")[:500])
    if run is None:
        messages.error(request, "A training run is already queued or running for this project.")
    else:
        messages.success(request, f"Retrain queued (run {run.pk}).")
    return redirect("project-models", project.pk)


@login_required
@require_POST
def model_version_swap(request: HttpRequest, project_id: int, number: int, action: str) -> HttpResponse:
    project = project_or_404(request, project_id, "manager")
    version = ModelVersion.objects.filter(project=project, number=number).first()
    if version is None:
        messages.error(request, f"This project has no model version {number}.")
        return redirect("project-models", project.pk)
    reason = request.POST.get("reason", "")[:1000]
    try:
        if action == "rollback":
            model_services.model_version_rollback(version=version, actor=request.user, reason=reason)
        else:
            model_services.model_version_force_promote(version=version, actor=request.user, reason=reason)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Version {version.number} is live.")
    return redirect("project-models", project.pk)


# The start form's fields, by their names on the page (for the messages of bad input).
START_FIELDS = {"challenger": "Challenger", "mode": "Mode", "traffic_share": "Traffic share", "alpha": "α",
                "min_gain": "Minimum gain", "looks": "Looks", "min_sample": "Minimum sample"}


def _experiments_page(request: HttpRequest, project, form: dict | None = None, error: str = "",
                      status: int = 200) -> HttpResponse:
    live = selectors.model_version_live(project.pk)
    experiments = Experiment.objects.filter(project=project).select_related(
        "champion", "challenger", "created_by", "stopped_by")
    return render(request, "learner/experiments.html", {
        "project": project,
        "live": live,
        "running": [e for e in experiments if e.status == Experiment.Status.RUNNING],
        "past": [e for e in experiments if e.status != Experiment.Status.RUNNING],
        "challengers": selectors.experiment_challengers(project.pk, live),
        "form": form or {"mode": Experiment.Mode.SHADOW, "traffic_share": "10"},
        "defaults": {"alpha": settings.LABELHUB_EXPERIMENT_ALPHA, "min_gain": settings.LABELHUB_EXPERIMENT_MIN_GAIN,
                     "looks": settings.LABELHUB_EXPERIMENT_LOOKS},
        "start_error": error,
        "is_manager": True,
    }, status=status)


@login_required
@require_GET
def project_experiments(request: HttpRequest, project_id: int) -> HttpResponse:
    # Experiments are the managers' (agreed access levels); reviewers see versions on the Models page.
    return _experiments_page(request, project_or_404(request, project_id, "manager"))


def _start_input(form: dict) -> dict:
    """The start form as the REST start's input: blank fields left out, the traffic share from percent to a fraction."""
    data = {key: form[key] for key in START_FIELDS if form.get(key, "").strip()}
    if "traffic_share" in data:
        try:
            data["traffic_share"] = float(data["traffic_share"]) / 100
        except ValueError:
            raise DomainError(f"Traffic share: give a percentage such as 10 (got {data['traffic_share'][:20]!r}).") from None
    if form.get("mode") != Experiment.Mode.SPLIT:
        data.pop("traffic_share", None)
    serializer = ExperimentListApi.InputSerializer(data=data)
    if not serializer.is_valid():
        raise DomainError(" ".join(f"{START_FIELDS.get(field, field)}: {' '.join(map(str, messages))}"
                                   for field, messages in serializer.errors.items()))
    return dict(serializer.validated_data)


@login_required
@require_POST
def experiment_start(request: HttpRequest, project_id: int) -> HttpResponse:
    """Start an experiment from the page, with the same bounds as the REST start and the service's refusals in words."""
    project = project_or_404(request, project_id, "manager")
    form = {key: request.POST.get(key, "")[:40] for key in START_FIELDS}
    try:
        values = _start_input(form)
        experiment = experiment_services.experiment_start(
            project=project, user=request.user, challenger_number=values.pop("challenger"), **values)
    except DomainError as exc:
        return _experiments_page(request, project, form, exc.message, status=exc.status_code)
    messages.success(request, f"Experiment {experiment.pk} started: v{experiment.challenger.number} against the live "
                              f"v{experiment.champion.number}, {experiment.get_mode_display().lower()}.")
    return redirect("project-experiments", project.pk)


@login_required
@require_POST
def experiment_stop(request: HttpRequest, project_id: int, experiment_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, "manager")
    experiment = get_object_or_404(Experiment, project=project, pk=experiment_id)
    try:
        experiment_services.experiment_stop(experiment=experiment, user=request.user,
                                            reason=request.POST.get("reason", "")[:1000])
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Experiment {experiment.pk} stopped; the champion stays live.")
    return redirect("project-experiments", project.pk)
