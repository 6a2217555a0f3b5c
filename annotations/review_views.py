"""The review pages: the review queue with one item's labels, resolve and correct (htmx), and agreement."""
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from labelhub.api import ID_MAX, DomainError, NotFound

from . import selectors, services
from .models import Item, Project
from .services.review import NOTE_MAX
from .view_helpers import form_error_text, item_feature_tables, item_of_project_or_404, label_controls, project_or_404

# Items listed per page of the queue; the list links to the next page by item id.
PAGE_SIZE = 50


class ResolveForm(forms.Form):
    label_id = forms.IntegerField(min_value=1, max_value=ID_MAX, required=False)
    clear = forms.BooleanField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("clear") and data.get("label_id") is None:
            raise forms.ValidationError("Choose a label.")
        return data


class CorrectForm(forms.Form):
    label_id = forms.IntegerField(min_value=1, max_value=ID_MAX, error_messages={"required": "Choose a label."})
    note = forms.CharField(required=False, max_length=NOTE_MAX)


def _filter(request: HttpRequest) -> str:
    kind = request.GET.get("filter") or request.POST.get("filter") or "queue"
    return kind if kind in selectors.REVIEW_FILTERS else "queue"


def _error(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return render(request, "annotations/_review_error.html", {"message": message}, status=status)


def _panel(project: Project, item: Item | None, kind: str) -> dict[str, Any]:
    """What the item panel shows: the item, every expert's label, the model's suggestion, resolve and correct."""
    if item is None:
        return {"project": project, "filter": kind, "item": None}
    summary = selectors.item_review_summary(item)
    labels = selectors.project_labels(project)
    by_id = {label.pk: label for label in labels}
    return {
        "project": project,
        "filter": kind,
        "item": item,
        "summary": summary,
        "majority": by_id.get(summary["majority_label_id"]),
        "votes": [(by_id.get(label_id), count) for label_id, count in sorted(
            summary["votes"].items(), key=lambda kv: -kv[1])],
        "features": item_feature_tables(project, item),
        "all_labels": labels,
        **label_controls(labels),
    }


def _filter_counts(project: Project) -> list[tuple[str, str, int]]:
    """Each review filter's key, name and how many items it holds now (the page's tabs)."""
    return [(key, name, selectors.review_items(project, kind=key).count())
            for key, name in selectors.REVIEW_FILTERS.items()]


def _next_item_id(project: Project, kind: str, after: int) -> int | None:
    """The id of the item after ``after`` in the filter, wrapping around to the first; None if none is left."""
    ids = selectors.review_items(project, kind=kind).prefetch_related(None).values_list("pk", flat=True)
    return ids.filter(pk__gt=after).first() or ids.exclude(pk=after).first()


@login_required
@require_GET
def review_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """The review queue: a filtered list of items and the selected item's labels."""
    project = project_or_404(request, project_id, "reviewer")
    kind = _filter(request)
    items = selectors.review_items(project, kind=kind)
    try:
        after = int(request.GET.get("after") or 0)
        selected = int(request.GET.get("item") or 0)
    except ValueError:
        after = selected = 0
    after = min(max(after, 0), 2**63 - 1)
    page = list(items.filter(pk__gt=after)[:PAGE_SIZE + 1])
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    item = None
    if 0 < selected < 2**63:
        try:
            item = item_of_project_or_404(request, project, selected)
        except Http404:
            item = None
    if item is None and page:
        item = item_of_project_or_404(request, project, page[0].pk)
    return render(request, "annotations/review.html", {
        "project": project,
        "filter": kind,
        "filters": _filter_counts(project),
        "items": page,
        "next_after": page[-1].pk if more else None,
        "panel": _panel(project, item, kind),
    })


@login_required
@require_GET
def review_item(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    """One item's panel (the page loads it when a row is chosen)."""
    project = project_or_404(request, project_id, "reviewer")
    item = item_of_project_or_404(request, project, item_id)
    return render(request, "annotations/_review_panel.html", {"panel": _panel(project, item, _filter(request))})


@login_required
@require_POST
def review_resolve(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    """Set (or clear) the item's final label; the next item's panel, and the row removed from the list."""
    project = project_or_404(request, project_id, "reviewer")
    try:
        item = item_of_project_or_404(request, project, item_id)
    except Http404 as exc:
        return _error(request, str(exc), 404)
    form = ResolveForm(request.POST)
    if not form.is_valid():
        return _error(request, form_error_text(form), 400)
    kind = _filter(request)
    try:
        label = None if form.cleaned_data["clear"] else selectors.project_label_get(
            project, label_id=form.cleaned_data["label_id"]
        )
        services.item_resolve(item=item, label=label, user=request.user)
    except DomainError as exc:
        return _error(request, exc.message, exc.status_code)
    still_listed = selectors.review_items(project, kind=kind).filter(pk=item.pk).exists()
    shown_id = item.pk if still_listed else _next_item_id(project, kind, item.pk)
    shown = item_of_project_or_404(request, project, shown_id) if shown_id is not None else None
    return render(request, "annotations/_review_resolved.html", {
        "panel": _panel(project, shown, kind),
        "removed": None if still_listed else item.pk,
        "resolved": item,
        "label": label,
        "filters": _filter_counts(project),
    })


@login_required
@require_POST
def review_correct(request: HttpRequest, project_id: int, annotation_id: int) -> HttpResponse:
    """Change one expert's label (recorded); the item's panel again."""
    project = project_or_404(request, project_id, "reviewer")
    try:
        annotation = selectors.review_annotation_get_for_user(request.user, annotation_id)
    except NotFound as exc:
        return _error(request, exc.message, 404)
    if annotation.item.project_id != project.pk:
        return _error(request, "Annotation not found.", 404)
    form = CorrectForm(request.POST)
    if not form.is_valid():
        return _error(request, form_error_text(form), 400)
    try:
        label = selectors.project_label_get(project, label_id=form.cleaned_data["label_id"])
        services.annotation_correct(
            annotation=annotation, label=label, user=request.user, note=form.cleaned_data["note"]
        )
    except DomainError as exc:
        return _error(request, exc.message, exc.status_code)
    item = item_of_project_or_404(request, project, annotation.item_id)
    return render(request, "annotations/_review_panel.html", {"panel": _panel(project, item, _filter(request))})


@login_required
@require_GET
def agreement_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """Agreement between experts (per project, per expert, pairwise) and accuracy on gold items."""
    project = project_or_404(request, project_id, "reviewer")
    result = selectors.project_agreement(project)
    return render(request, "annotations/agreement.html", {
        "project": project,
        "result": result,
        "matrix": selectors.agreement_matrix(result),
        "gold": selectors.gold_accuracy(project),
        "gold_count": selectors.project_gold_count(project),
    })
