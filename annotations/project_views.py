"""Pages where a project is made and set up: the new-project page, its settings and its labels."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from labelhub.api import DomainError

from . import selectors, services
from .models import Label, Project
from .project_forms import LabelForm, LabelRows, ProjectCreateForm, ProjectSettingsForm, label_rows_initial
from .services.labels import LABEL_PALETTE
from .view_helpers import project_or_404


def _domain_errors(form, exc: DomainError) -> None:
    """Put a service's field errors on the form's fields, and the rest on the form."""
    details = exc.details if isinstance(exc.details, dict) else {}
    for field, reasons in details.items():
        for reason in reasons if isinstance(reasons, list) else [reasons]:
            form.add_error(field if field in form.fields else None, str(reason))
    if not details:
        form.add_error(None, exc.message)


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request: HttpRequest) -> HttpResponse:
    """Create a project with its labels, then go straight to its import page (staff, or users allowed to)."""
    if not services.user_can_create_projects(request.user):
        raise PermissionDenied("Only staff, or users an admin allowed to, create projects.")
    form = ProjectCreateForm(request.POST or None)
    rows = LabelRows(request.POST or None, prefix="labels", initial=None if request.POST else label_rows_initial())
    if request.method == "POST" and form.is_valid() & rows.is_valid():
        try:
            project = services.project_create(user=request.user, labels=rows.labels(), **form.cleaned_data)
        except DomainError as exc:
            _domain_errors(form, exc)
        else:
            messages.success(request, f"Project “{project.name}” is ready: import its items.")
            return redirect("project-import", project.pk)
    return render(request, "annotations/project_new.html", {
        "form": form, "rows": rows, "palette": ",".join(LABEL_PALETTE),
    }, status=400 if request.method == "POST" else 200)


def _settings_page(request: HttpRequest, project: Project, *, form=None, label_form=None,
                   status: int = 200) -> HttpResponse:
    labels = selectors.project_labels_with_usage(project)
    return render(request, "annotations/project_settings.html", {
        "project": project, "is_manager": True, "labels": labels,
        "form": form or ProjectSettingsForm(instance=project),
        "label_form": label_form or LabelForm(project=project, initial={
            "color": services.label_color_next(label.color for label in labels)}),
    }, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    """Every setting of the project in sections, and its labels (managers)."""
    project = project_or_404(request, project_id, "manager")
    if request.method == "GET":
        return _settings_page(request, project)
    # The form checks a copy: the service compares the project's values before and after.
    form = ProjectSettingsForm(request.POST, instance=Project.objects.get(pk=project.pk))
    if form.is_valid():
        try:
            services.project_update(project=project, **form.cleaned_data)
        except DomainError as exc:
            _domain_errors(form, exc)
        else:
            messages.success(request, "Settings saved.")
            return redirect("project-settings", project.pk)
    return _settings_page(request, project, form=form, status=400)


@login_required
@require_POST
def project_label_add(request: HttpRequest, project_id: int) -> HttpResponse:
    """Add a label to the project (managers)."""
    project = project_or_404(request, project_id, "manager")
    form = LabelForm(request.POST, project=project)
    if form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if v is not None}
        try:
            label = services.label_create(project=project, **data)
        except DomainError as exc:
            _domain_errors(form, exc)
        else:
            messages.success(request, f"Label “{label.name}” added.")
            return redirect("project-settings", project.pk)
    return _settings_page(request, project, label_form=form, status=400)


def _label_save(request: HttpRequest, project: Project, label: Label) -> None:
    form = LabelForm(request.POST, instance=Label.objects.get(pk=label.pk), project=project)
    if form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if v is not None}
        services.label_update(label=label, **data)
        messages.success(request, f"Label “{label.name}” saved.")
    else:
        for field, errors in form.errors.items():
            name = form.fields[field].label if field in form.fields else ""
            messages.error(request, f"“{label.name}”: {name + ': ' if name else ''}{' '.join(errors)}")


def _label_merge(request: HttpRequest, project: Project, label: Label) -> None:
    try:
        into = selectors.label_get(project, int(request.POST.get("into", "")))
    except ValueError:
        into = None
    if into is None:
        raise DomainError("Choose the label to merge into.")
    usage = services.label_merge(label=label, into=into, user_id=request.user.pk)
    messages.success(request, (
        f"“{label.name}” is merged into “{into.name}”: its {usage['annotations']} annotation(s) now say “{into.name}”. "
        "A retrain is asked for, so that the live model stops suggesting the merged label; until the new model is "
        "live, its suggestions of it show as none."
    ))


@login_required
@require_POST
def project_label_change(request: HttpRequest, project_id: int, label_id: int) -> HttpResponse:
    """Save, move, delete or merge one label (managers); every outcome is a message on the settings page."""
    project = project_or_404(request, project_id, "manager")
    label = selectors.label_get(project, label_id) if 0 < label_id < 2**63 else None
    action = request.POST.get("action")
    try:
        if label is None:
            raise DomainError("This label no longer exists.")
        if action == "save":
            _label_save(request, project, label)
        elif action in ("up", "down"):
            services.label_move(label=label, step=-1 if action == "up" else 1)
        elif action == "delete":
            services.label_delete(label=label)
            messages.success(request, f"Label “{label.name}” deleted.")
        elif action == "merge":
            _label_merge(request, project, label)
        else:
            raise DomainError("Unknown action.")
    except DomainError as exc:
        reasons = [" ".join(map(str, r)) for r in (exc.details or {}).values()] if isinstance(exc.details, dict) else []
        messages.error(request, " ".join([exc.message, *reasons]))
    return redirect("project-settings", project.pk)
