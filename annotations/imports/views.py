"""The import page: upload files into a project and follow its recent imports."""
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from labelhub.api import DomainError, NotFound

from ..models import ImportJob
from ..view_helpers import project_or_404
from . import selectors, services
from .forms import ImportForm
from .rows import KIND_FORMATS_TEXT, error_line


def _import_panel(job: ImportJob) -> dict[str, Any]:
    """What the job panel shows: progress of the import and its features, counts and messages."""
    progress = selectors.import_job_progress(job)
    percent = None
    if progress and progress["total"]:
        percent = min(100, round(100 * progress["bytes"] / progress["total"]))
    finished = job.status == ImportJob.Status.FAILED or (
        job.status == ImportJob.Status.DONE
        and job.features_status in (ImportJob.Status.DONE, ImportJob.Status.FAILED)
    )
    return {
        "job": job,
        "progress": progress,
        "percent": percent,
        "error_lines": [error_line(e) for e in job.errors],
        "errors_hidden": job.rejected_count - len(job.errors),
        "polling": not finished,
    }


@login_required
@require_http_methods(["GET", "POST"])
def project_import(request: HttpRequest, project_id: int) -> HttpResponse:
    """Upload files to import into a project, and follow recent imports."""
    project = project_or_404(request, project_id, min_role="manager")
    form = ImportForm(request.POST, request.FILES) if request.method == "POST" else ImportForm()
    if form.is_valid():
        uploads = [(f.name, f) for f in form.cleaned_data["files"]]
        try:
            jobs = services.import_jobs_submit(project=project, user=request.user, uploads=uploads)
        except DomainError as exc:
            form.add_error("files", exc.message)
        else:
            failed = [job for job in jobs if job.status == ImportJob.Status.FAILED]
            for job in failed:
                messages.error(request, f"{job.filename}: {job.message}")
            if len(failed) < len(jobs):
                queued = len(jobs) - len(failed)
                messages.success(request, f"Queued {queued} file{'s' if queued != 1 else ''} for import.")
            return redirect("project-import", project.pk)
    return render(
        request,
        "annotations/import.html",
        {
            "project": project,
            "form": form,
            "formats": KIND_FORMATS_TEXT[project.kind],
            "panels": [_import_panel(job) for job in selectors.import_jobs_recent(project)],
        },
    )


@login_required
@require_GET
def import_job_panel(request: HttpRequest, job_id: int) -> HttpResponse:
    """The job panel alone, which the import page polls while the job runs."""
    try:
        job = selectors.import_job_get_for_user(request.user, job_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    return render(request, "annotations/_import_job.html", {"panel": _import_panel(job)})
