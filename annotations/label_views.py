"""The labeling page and the fragments its script asks for: next item, submit, skip, undo, renew, release."""
import functools
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from labelhub.api import ID_MAX, DomainError, NotFound

from . import selectors, services
from .models import SKIP_REASON_MAX_CHARS, Lease, Project
from .view_helpers import form_error_text, item_feature_tables, item_metadata_rows, label_controls, project_or_404

# The longest time one item may count (the database column is a 32-bit integer of milliseconds).
TIME_SPENT_MAX_MS = 2**31 - 1


class SubmitForm(forms.Form):
    label_id = forms.IntegerField(min_value=1, max_value=ID_MAX, error_messages={"required": "Choose a label."})
    time_spent_ms = forms.IntegerField(min_value=0, required=False)


class SkipForm(forms.Form):
    reason = forms.CharField(
        max_length=SKIP_REASON_MAX_CHARS, required=False,
        error_messages={"max_length": f"Say why in at most {SKIP_REASON_MAX_CHARS} characters."},
    )


def _lease_ids(values: list[str]) -> list[uuid.UUID]:
    """Parse lease ids sent by the page; DomainError if one is not an id."""
    try:
        return [uuid.UUID(v) for v in values if v]
    except ValueError:
        raise DomainError("exclude must list lease ids.") from None


def _lease_or_404(request: HttpRequest, project: Project, lease_id: uuid.UUID) -> Lease:
    """The user's lease, if it belongs to the project in the address."""
    try:
        lease = selectors.lease_get_for_user(lease_id, request.user)
    except NotFound:
        lease = None
    if lease is None or lease.project_id != project.pk:
        raise NotFound("This item is not reserved for you in this project.")
    return lease


def _error(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return render(request, "annotations/_label_error.html", {"message": message}, status=status)


def _fragment_errors(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Render a domain error or a 404 as a readable fragment with its status (the script shows its text)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except DomainError as exc:
            return _error(request, exc.message, exc.status_code)
        except Http404 as exc:
            return _error(request, str(exc) or "Not found.", 404)

    return wrapper


def _item(project: Project, lease: Lease) -> dict[str, Any]:
    """What the item fragment shows. Only the lease id leaves the server, never how the item was drawn.

    A withheld suggestion (every audit item's, and some others') shows as no suggestion at all,
    the same markup whatever the reason.
    """
    item = lease.item
    suggestion = None
    if project.show_suggestions and not lease.suggestion_withheld and lease.predicted_label_id is not None:
        confidence = lease.predicted_confidence
        suggestion = {
            "label": lease.predicted_label,
            "percent": None if confidence is None else round(100 * confidence),
            "model_version": lease.model_version,
        }
    return {
        "lease_id": lease.pk,
        "item": item,
        "project": project,
        "features": item_feature_tables(project, item),
        "metadata": item_metadata_rows(project, item),
        "suggestion": suggestion,
    }


def _progress(project: Project, user: AbstractBaseUser) -> dict[str, Any]:
    """Queue progress with what the progress fragment derives from it."""
    progress = selectors.queue_progress(project, user)
    pool, labeled = progress["pool"], progress["labeled"]
    scoring = progress.get("scoring")
    strategy = scoring and scoring.get("strategy")
    return {
        **progress,
        "percent": math.floor(100 * labeled / pool) if pool else 0,
        "rendered_at": time.time_ns() // 1000,
        "left": max(pool - progress["done"], 0),
        "strategy_name": Project.Strategy(strategy).label if strategy in Project.Strategy.values else strategy,
    }


@login_required
@require_GET
def label_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """The labeling page with the expert's current item."""
    project = project_or_404(request, project_id)
    error = None
    try:
        lease = services.queue_next(project=project, user=request.user)
    except DomainError as exc:
        lease, error = None, exc.message
    labels = selectors.project_labels(project)
    return render(
        request,
        "annotations/label.html",
        {
            "project": project,
            "current": _item(project, lease) if lease else None,
            "progress": _progress(project, request.user),
            "error": error,
            "heartbeat_ms": max(1000, project.lease_ttl_seconds * 1000 // 3),
            "is_manager": selectors.ROLE_RANK[project.viewer_role] >= selectors.ROLE_RANK["manager"],
            "skip_reason_max": SKIP_REASON_MAX_CHARS,
            **label_controls(labels),
        },
    )


@login_required
@require_POST
@_fragment_errors
def label_next(request: HttpRequest, project_id: int) -> HttpResponse:
    """Lease the next item, other than the ones the page already holds; the item or the all-done fragment."""
    project = project_or_404(request, project_id)
    exclude = _lease_ids(request.POST.getlist("exclude"))
    lease = services.queue_next(project=project, user=request.user, exclude=exclude)
    if lease is None:
        return render(
            request, "annotations/_label_done.html",
            {"project": project, "progress": _progress(project, request.user), "with_progress": True},
        )
    return render(request, "annotations/_label_item.html", {"current": _item(project, lease)})


@login_required
@require_POST
@_fragment_errors
def label_submit(request: HttpRequest, project_id: int, lease_id: uuid.UUID) -> HttpResponse:
    """Store the expert's label for a leased item; the updated progress fragment."""
    project = project_or_404(request, project_id)
    form = SubmitForm(request.POST)
    if not form.is_valid():
        return _error(request, form_error_text(form), 400)
    _lease_or_404(request, project, lease_id)
    spent = form.cleaned_data["time_spent_ms"]
    services.annotation_submit(
        lease_id=lease_id,
        user=request.user,
        label_id=form.cleaned_data["label_id"],
        time_spent_ms=None if spent is None else min(spent, TIME_SPENT_MAX_MS),
    )
    return render(request, "annotations/_label_progress.html", {"progress": _progress(project, request.user)})


@login_required
@require_POST
@_fragment_errors
def label_skip(request: HttpRequest, project_id: int, lease_id: uuid.UUID) -> HttpResponse:
    """Skip a leased item, with the expert's reason if they gave one; the progress fragment."""
    project = project_or_404(request, project_id)
    form = SkipForm(request.POST)
    if not form.is_valid():
        return _error(request, form_error_text(form), 400)
    _lease_or_404(request, project, lease_id)
    services.lease_skip(lease_id=lease_id, user=request.user, reason=form.cleaned_data["reason"])
    return render(request, "annotations/_label_progress.html", {"progress": _progress(project, request.user)})


@login_required
@require_POST
@_fragment_errors
def label_undo(request: HttpRequest, project_id: int) -> HttpResponse:
    """Take back the expert's last label here; that item again, with the progress as an out-of-band fragment."""
    project = project_or_404(request, project_id)
    lease = services.annotation_undo(project=project, user=request.user)
    if lease is None:
        return _error(request, "There is no label of yours to undo in this project.", 409)
    return render(
        request,
        "annotations/_label_undone.html",
        {"current": _item(project, lease), "progress": _progress(project, request.user)},
    )


@login_required
@require_POST
@_fragment_errors
def label_renew(request: HttpRequest, project_id: int, lease_id: uuid.UUID) -> HttpResponse:
    """Extend the reservation of an item the page still shows or holds."""
    project = project_or_404(request, project_id)
    _lease_or_404(request, project, lease_id)
    services.lease_renew(lease_id=lease_id, user=request.user)
    return HttpResponse(status=204)


@login_required
@require_POST
@_fragment_errors
def label_release(request: HttpRequest, project_id: int, lease_id: uuid.UUID) -> HttpResponse:
    """Give an unanswered item back to the queue (sent by the page as it closes)."""
    project = project_or_404(request, project_id)
    _lease_or_404(request, project, lease_id)
    services.lease_release(lease_id=lease_id, user=request.user)
    return HttpResponse(status=204)
