"""The items browser (reviewers and managers), one item's page with its corrections, and an expert's own labels."""
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from labelhub.api import ID_MAX, DomainError, NotFound

from . import selectors, services
from .models import Item, Label, Project
from .selectors.browse import META_FILTERS_MAX, SEARCH_MAX
from .selectors.labels import majority_label
from .services.review import NOTE_MAX
from .view_helpers import form_error_text, item_feature_tables, item_of_project_or_404, project_or_404

META_NAME_MAX, META_VALUE_MAX = 100, 200
MY_LABELS_PER_PAGE = 50
SNIPPET_CHARS = 140


class BrowseForm(forms.Form):
    status = forms.ChoiceField(choices=list(selectors.STATUSES.items()), required=False)
    label = forms.IntegerField(min_value=1, max_value=ID_MAX, required=False)
    annotator = forms.IntegerField(min_value=1, max_value=ID_MAX, required=False)
    prediction = forms.IntegerField(min_value=1, max_value=ID_MAX, required=False)
    conf_min = forms.FloatField(min_value=0, max_value=1, required=False, label="Confidence from")
    conf_max = forms.FloatField(min_value=0, max_value=1, required=False, label="Confidence to")
    q = forms.CharField(max_length=SEARCH_MAX, required=False, label="Search")
    sort = forms.ChoiceField(choices=list(selectors.SORTS.items()), required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        low, high = data.get("conf_min"), data.get("conf_max")
        if low is not None and high is not None and low > high:
            raise forms.ValidationError("The confidence range is empty: its lower end is above its upper end.")
        return data


def _metadata(values: list[str]) -> tuple[tuple[str, str], ...]:
    """Parse ``field=value`` metadata filters; a DomainError names what is wrong with one."""
    pairs = [v for v in values if v.strip()]
    if len(pairs) > META_FILTERS_MAX:
        raise DomainError(f"At most {META_FILTERS_MAX} metadata filters at once.")
    parsed = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise DomainError(f"Write a metadata filter as field=value (got {pair[:60]!r}).")
        if len(name) > META_NAME_MAX or len(value) > META_VALUE_MAX or "\x00" in pair:
            raise DomainError(f"The metadata filter {pair[:60]!r}… is too long or holds a null character.")
        parsed.append((name, value.strip()))
    return tuple(parsed)


def _filters(request: HttpRequest) -> tuple[BrowseForm, selectors.ItemFilters | None, list[str]]:
    """The filters in the address, or the reasons they cannot be used."""
    form = BrowseForm(request.GET)
    errors = [] if form.is_valid() else [form_error_text(form)]
    try:
        metadata = _metadata(request.GET.getlist("meta"))
    except DomainError as exc:
        errors.append(exc.message)
    if errors:
        return form, None, errors
    data = form.cleaned_data
    return form, selectors.ItemFilters(
        status=data["status"] or "", label_id=data["label"], annotator_id=data["annotator"],
        prediction_id=data["prediction"], confidence_min=data["conf_min"], confidence_max=data["conf_max"],
        search=data["q"], metadata=metadata, sort=data["sort"] or "newest",
    ), []


def _page_number(request: HttpRequest) -> int:
    try:
        return min(max(int(request.GET.get("page") or 1), 1), 10**6)
    except ValueError:
        return 1


def _snippet(project: Project, item: Item) -> str:
    """A short view of a text or a tabular row for a table cell (images show their thumbnail)."""
    if project.kind == Project.Kind.TABULAR:
        pairs = [f"{name} {value}" for table in item_feature_tables(project, item) for name, value in table]
        return ", ".join(pairs[:4]) + (" …" if len(pairs) > 4 else "")
    text = item.text or ""
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS].rstrip() + "…"


def _decorate(project: Project, items: list[Item], labels: dict[int, Label]) -> None:
    """Give each listed item what its row shows: snippet, final label, live prediction."""
    for item in items:
        votes = [(a.pk, a.label_id) for a in item.annotations.all()]
        final = item.resolved_label_id or (majority_label(votes) if votes else None)
        item.snippet = _snippet(project, item)
        item.final_label = labels.get(final) if final else None
        item.vote_labels = [(a, labels.get(a.label_id)) for a in item.annotations.all()]
        item.live_label = labels.get(item.live_label_id) if item.live_label_id else None


def _query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


@login_required
@require_GET
def items_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """The project's items under filters and a sort in the address, a page at a time."""
    project = project_or_404(request, project_id, "reviewer")
    form, filters, errors = _filters(request)
    page = None
    if filters is not None:
        try:
            page = selectors.item_browse(project, filters, page=_page_number(request))
        except DomainError as exc:
            errors.append(exc.message)
    if page is not None:
        _decorate(project, page.items, page.labels)
    role = selectors.membership_role(request.user, project)
    return render(request, "annotations/items.html", {
        "project": project,
        "form": form,
        "errors": errors,
        "page": page,
        "labels": selectors.project_labels(project),
        "annotators": selectors.project_annotators(project),
        "meta_values": request.GET.getlist("meta")[:META_FILTERS_MAX] or [""],
        "query": _query_without_page(request),
        "scored_only": filters is not None and filters.needs_scoring(),
        "is_manager": selectors.ROLE_RANK[role] >= selectors.ROLE_RANK["manager"],
    }, status=400 if errors else 200)


class ItemCorrectForm(forms.Form):
    annotation_id = forms.IntegerField(
        min_value=1, max_value=ID_MAX, error_messages={"required": "Choose a label to correct."}
    )
    label_id = forms.IntegerField(min_value=1, max_value=ID_MAX, error_messages={"required": "Choose a label."})
    note = forms.CharField(required=False, max_length=NOTE_MAX)


def _back(request: HttpRequest) -> str:
    """The items list's query string to go back to (only a query string: never another address)."""
    back = request.GET.get("back") or request.POST.get("back") or ""
    return back if back.startswith("?") and len(back) <= 2000 else ""


def _item_page(
    request: HttpRequest, project: Project, item_id: int, error: str = "", status: int = 200
) -> HttpResponse:
    item = item_of_project_or_404(request, project, item_id)
    summary = selectors.item_review_summary(item)
    labels = selectors.project_labels(project)
    by_id = {label.pk: label for label in labels}
    role = selectors.membership_role(request.user, project)
    return render(request, "annotations/item.html", {
        "project": project,
        "item": item,
        "summary": summary,
        "final": by_id.get(summary["final_label_id"]),
        "live": selectors.item_history(item),
        "features": item_feature_tables(project, item),
        "all_labels": labels,
        "error": error,
        "back": _back(request),
        "is_manager": selectors.ROLE_RANK[role] >= selectors.ROLE_RANK["manager"],
    }, status=status)


@login_required
@require_GET
def item_page(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    """One item: its content, every label with who and when and its corrections, the live model's prediction."""
    project = project_or_404(request, project_id, "reviewer")
    return _item_page(request, project, item_id)


@login_required
@require_POST
def item_correct(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    """Correct one expert's label of the item (the review workflow's correction, recorded), then the item again."""
    project = project_or_404(request, project_id, "reviewer")
    form = ItemCorrectForm(request.POST)
    if not form.is_valid():
        return _item_page(request, project, item_id, form_error_text(form), 400)
    try:
        annotation = selectors.review_annotation_get_for_user(request.user, form.cleaned_data["annotation_id"])
    except NotFound as exc:
        return _item_page(request, project, item_id, exc.message, 404)
    if annotation.item_id != item_id or annotation.item.project_id != project.pk:
        return _item_page(request, project, item_id, "That label is not one of this item's.", 404)
    try:
        label = selectors.project_label_get(project, label_id=form.cleaned_data["label_id"])
        services.annotation_correct(annotation=annotation, label=label, user=request.user,
                                    note=form.cleaned_data["note"])
    except DomainError as exc:
        return _item_page(request, project, item_id, exc.message, exc.status_code)
    messages.success(request, f"The label is now {label.name!r}; the correction is recorded.")
    back = _back(request)
    address = reverse("project-item", args=[project.pk, item_id])
    return redirect(address + (f"?{urlencode({'back': back})}" if back else ""))


class ChangeOwnForm(forms.Form):
    label_id = forms.IntegerField(min_value=1, max_value=ID_MAX, error_messages={"required": "Choose a label."})


def _my_labels(request: HttpRequest, project: Project, error: str = "", status: int = 200) -> HttpResponse:
    paginator = Paginator(selectors.annotations_of_user(project, request.user), MY_LABELS_PER_PAGE)
    page = paginator.get_page(request.GET.get("page") or request.POST.get("page"))
    for annotation in page.object_list:
        annotation.snippet = _snippet(project, annotation.item)
    return render(request, "annotations/my_labels.html", {
        "project": project, "page": page, "labels": selectors.project_labels(project), "error": error,
    }, status=status)


@login_required
@require_GET
def my_labels_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """The expert's own labels in the project, newest first, each with a change-label form."""
    project = project_or_404(request, project_id)
    return _my_labels(request, project)


@login_required
@require_POST
def my_label_change(request: HttpRequest, project_id: int, annotation_id: int) -> HttpResponse:
    """Change one of the expert's own labels (recorded as a correction by them); the list again."""
    project = project_or_404(request, project_id)
    annotation = selectors.own_annotation_get(project, request.user, annotation_id)
    if annotation is None:
        return _my_labels(request, project, "That label is not one of yours in this project.", 404)
    form = ChangeOwnForm(request.POST)
    if not form.is_valid():
        return _my_labels(request, project, form_error_text(form), 400)
    try:
        label = selectors.project_label_get(project, label_id=form.cleaned_data["label_id"])
        services.annotation_change_own(annotation=annotation, label=label, user=request.user)
    except DomainError as exc:
        return _my_labels(request, project, exc.message, exc.status_code)
    messages.success(request, f"Your label of item {annotation.item.external_id} is now {label.name!r}.")
    page = request.POST.get("page", "")
    back = f"?page={int(page)}" if page.isdigit() and len(page) <= 6 else ""  # pages stop far below a million
    return redirect(reverse("my-labels", args=[project.pk]) + back)
