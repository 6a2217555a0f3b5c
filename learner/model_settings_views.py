"""The "Model and features" page: a manager chooses the project's featurizer, its model and its embedding field."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotations.models import Project
from annotations.view_helpers import project_or_404
from labelhub.api import DomainError

from .services import model_settings as services

# A form value longer than this is cut before it is checked (the longest valid one has 80 characters).
VALUE_MAX_CHARS = 200


def _page(request: HttpRequest, project: Project, *, form: dict | None = None, error: DomainError | None = None,
          status: int = 200) -> HttpResponse:
    details = error.details if error is not None and isinstance(error.details, dict) else {}
    return render(request, "learner/model_settings.html", {
        "project": project,
        "is_manager": True,
        "current": services.model_settings_get(project),
        "form": form or _page_defaults(project),
        # Errors of the form's fields, and the rest (a refusal that names no field).
        "errors": {name: reasons for name, reasons in details.items() if name in services.SETTINGS},
        "other_errors": [str(reason) for name, reasons in details.items() if name not in services.SETTINGS
                         for reason in reasons] or ([error.message] if error is not None and not details else []),
    }, status=status)


def _saved_sentences(before: tuple[str, str, str], project: Project) -> list[str]:
    """What the change does, a sentence per setting that changed."""
    current = services.model_settings_get(project)
    sentences = []
    if current["featurizer"]["key"] != before[0]:
        sentences.append(f"Featurizer set to “{current['featurizer']['label']}”: every item's features are being "
                         "recomputed in the background; the live model keeps serving meanwhile.")
    if project.model_kind != before[1]:
        sentences.append(f"Model set to {current['model_kind_label']}: a retrain is asked for; its model goes live "
                         "only once it proves itself better.")
    if project.embedding_field != before[2]:
        sentences.append(f"Imports now read each item's vector from “{project.embedding_field}”.")
    return sentences


@login_required
@require_http_methods(["GET", "POST"])
def project_model_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    """The featurizer and model with their choices, the embedding field and dimension (managers), and their change."""
    project = project_or_404(request, project_id, "manager")
    if request.method == "GET":
        return _page(request, project)
    # A field the form did not send stays as it is.
    form = {name: request.POST[name][:VALUE_MAX_CHARS] for name in services.SETTINGS if name in request.POST}
    before = (services.featurizer_key(project), project.model_kind, project.embedding_field)
    try:
        project = services.model_settings_update(project=project, user=request.user, **form)
    except DomainError as exc:
        return _page(request, project, form={**_page_defaults(project), **form}, error=exc, status=400)
    sentences = _saved_sentences(before, project)
    for sentence in sentences:
        messages.success(request, sentence)
    if not sentences:
        messages.info(request, "Nothing changed: these are the settings the project already has.")
    notice = services.model_settings_notice(project)
    if notice:
        messages.warning(request, notice)
    return redirect("project-model-settings", project.pk)


def _page_defaults(project: Project) -> dict[str, str]:
    return {"featurizer": services.featurizer_key(project), "model_kind": project.model_kind,
            "embedding_field": project.embedding_field}
