"""The project's models and experiments pages: versions, runs, A/B tests and their decisions; retrain, swap, stop."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotations import selectors as annotation_selectors
from labelhub.api import DomainError, NotFound

from .models import Experiment, ModelVersion, SwapHistory, TrainingRun
from .services import experiments as experiment_services
from .services import models as model_services
from .services import triggers


def _project(request: HttpRequest, project_id: int, min_role: str):
    try:
        return annotation_selectors.project_get_for_user(request.user, project_id, min_role=min_role)
    except NotFound as exc:
        raise Http404(exc.message) from exc


@login_required
@require_GET
def project_models(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project(request, project_id, "reviewer")
    role = annotation_selectors.membership_role(request.user, project)
    live = model_services.model_version_live(project.pk)
    return render(request, "learner/models.html", {
        "project": project,
        "live": live,
        "versions": ModelVersion.objects.filter(project=project).select_related("training_run"),
        "runs": TrainingRun.objects.filter(project=project).select_related("requested_by")[:50],
        "history": SwapHistory.objects.filter(project=project).select_related("from_version", "to_version", "actor")[:50],
        "is_manager": annotation_selectors.ROLE_RANK[role] >= annotation_selectors.ROLE_RANK["manager"],
    })


@login_required
@require_POST
def project_retrain(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project(request, project_id, "manager")
    run = triggers.manual_trigger(project.pk, request.user, request.POST.get("note", "")[:500])
    if run is None:
        messages.error(request, "A training run is already queued or running for this project.")
    else:
        messages.success(request, f"Retrain queued (run {run.pk}).")
    return redirect("project-models", project.pk)


@login_required
@require_POST
def model_version_swap(request: HttpRequest, project_id: int, number: int, action: str) -> HttpResponse:
    project = _project(request, project_id, "manager")
    version = get_object_or_404(ModelVersion, project=project, number=number)
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


@login_required
@require_GET
def project_experiments(request: HttpRequest, project_id: int) -> HttpResponse:
    # Experiments are the managers' (agreed access levels); reviewers see versions on the Models page.
    project = _project(request, project_id, "manager")
    role = annotation_selectors.membership_role(request.user, project)
    experiments = Experiment.objects.filter(project=project).select_related(
        "champion", "challenger", "created_by", "stopped_by")
    return render(request, "learner/experiments.html", {
        "project": project,
        "live": model_services.model_version_live(project.pk),
        "running": [e for e in experiments if e.status == Experiment.Status.RUNNING],
        "past": [e for e in experiments if e.status != Experiment.Status.RUNNING],
        "is_manager": annotation_selectors.ROLE_RANK[role] >= annotation_selectors.ROLE_RANK["manager"],
    })


@login_required
@require_POST
def experiment_stop(request: HttpRequest, project_id: int, experiment_id: int) -> HttpResponse:
    project = _project(request, project_id, "manager")
    experiment = get_object_or_404(Experiment, project=project, pk=experiment_id)
    try:
        experiment_services.experiment_stop(experiment=experiment, user=request.user,
                                            reason=request.POST.get("reason", "")[:1000])
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Experiment {experiment.pk} stopped; the champion stays live.")
    return redirect("project-experiments", project.pk)
