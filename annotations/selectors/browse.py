"""Reads of the items browser: a project's items under filters and a sort, one page at a time, and one item's page."""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import (
    BigIntegerField,
    Count,
    Exists,
    FilteredRelation,
    JSONField,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce

from labelhub.api import DomainError

from ..models import Annotation, AnnotationCorrection, Item, ItemScore, Label, Membership, Project, QueueScoring
from .review import review_item_ids
from .scoring import scoring_current

STATUSES = {
    "": "Any status",
    "unlabeled": "Unlabeled",
    "labeled": "Labeled",
    "done": "Done (labeled as often as the overlap asks)",
    "audit": "Audit",
    "gold": "Gold",
    "review": "Needs review",
    "disagreement": "Experts disagree",
    "resolved": "Resolved by a reviewer",
}
SORTS = {
    "newest": "Newest first",
    "oldest": "Oldest first",
    "uncertainty": "Most uncertain first",
    "confidence": "Least confident first",
    "-confidence": "Most confident first",
}
# Sorts and filters on the live scoring list only the items it scored (those still in the queue).
SCORED_SORTS = {"uncertainty", "confidence", "-confidence"}
PAGE_SIZE = 50
# Pages reach this deep into a filter's items; past it the page asks for narrower filters.
DEPTH_MAX = 10_000
# Matches are counted up to this many ("more than" past it): each counted row of a scored filter costs a join.
COUNT_MAX = 1_000
META_FILTERS_MAX = 5
SEARCH_MAX = 200


@dataclass(frozen=True)
class ItemFilters:
    """What the items browser is asked for; every id is checked against the project by ``item_browse``."""

    status: str = ""
    label_id: int | None = None
    annotator_id: int | None = None
    prediction_id: int | None = None
    confidence_min: float | None = None
    confidence_max: float | None = None
    search: str = ""
    metadata: tuple[tuple[str, str], ...] = ()
    sort: str = "newest"

    def needs_scoring(self) -> bool:
        """Whether the filters or the sort read the live scoring (and so keep to the items it scored)."""
        return (
            self.sort in SCORED_SORTS or self.prediction_id is not None
            or self.confidence_min is not None or self.confidence_max is not None
        )


@dataclass
class ItemPage:
    """One page of the browser: its items with their live scores, whether more follow, and about how many match."""

    items: list[Item]
    number: int
    more: bool
    total: int
    total_capped: bool
    scoring: QueueScoring | None
    labels: dict[int, Label] = field(default_factory=dict)


def project_annotators(project: Project) -> list[AbstractBaseUser]:
    """The project's members and everyone who labeled in it, by name (the annotator filter's choices)."""
    is_member = Membership.objects.filter(project=project, user=OuterRef("pk"))
    has_labeled = Annotation.objects.filter(item__project=project, annotator=OuterRef("pk"))
    User = get_user_model()
    return list(User.objects.filter(Exists(is_member) | Exists(has_labeled)).order_by(User.USERNAME_FIELD))


def _majority() -> Subquery:
    """The item's majority label as ``majority_label`` picks it: most votes, ties to the earliest annotation."""
    votes = (
        Annotation.objects.filter(item_id=OuterRef("pk")).order_by().values("label_id")
        .annotate(n=Count("id"), first=Min("id")).order_by("-n", "first").values("label_id")[:1]
    )
    return Subquery(votes)


def _metadata_forms(value: str) -> list[Any]:
    """The JSON values a metadata filter's ``value`` matches: the text, and the number or boolean it spells."""
    forms: list[Any] = [value]
    if value in ("true", "false"):
        forms.append(value == "true")
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None and number == number and abs(number) != float("inf"):
        forms.append(int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number)
    return forms


def _metadata_condition(metadata: tuple[tuple[str, str], ...]) -> Q:
    """The item's metadata holds every ``name`` with its value (as text, or as the number or boolean it spells).

    One containment per combination of the values' forms (at most 2 ** META_FILTERS_MAX), rather than
    one per filter: PostgreSQL then estimates the filters' joint share from the metadata it sampled,
    where per filter it multiplies their shares, and a pair of filters that nothing matches looks
    common enough to find by walking the newest items (the whole project, when nothing matches).
    A name given twice is required on its own (one JSON object holds a name once).
    """
    condition, wanted = Q(), {}
    for name, value in metadata:
        if name in wanted:
            condition &= _any_of([{name: form} for form in _metadata_forms(value)])
        else:
            wanted[name] = _metadata_forms(value)
    combinations = [dict(zip(wanted, forms, strict=True)) for forms in product(*wanted.values())]
    return condition & _any_of(combinations) if wanted else condition


def _any_of(containments: list[dict[str, Any]]) -> Q:
    condition = _holds(containments[0])
    for containment in containments[1:]:
        condition |= _holds(containment)
    return condition


def _holds(containment: dict[str, Any]) -> Q:
    """The metadata holds each of these names with its value: one JSON containment, or (SQLite, which has no
    containment) one key lookup per name, each name taken whole whatever it holds (``__`` included)."""
    if connection.features.supports_json_field_contains:
        return Q(metadata__contains=containment)
    condition = Q()
    for name, value in containment.items():
        key = KeyTransform(name, "metadata")
        condition &= Q(key.get_lookup("exact")(key, Value(value, output_field=JSONField())))
    return condition


def _check_ids(project: Project, filters: ItemFilters) -> None:
    """Raise a DomainError naming any label or annotator that is not the project's."""
    label_ids = {v for v in (filters.label_id, filters.prediction_id) if v is not None}
    known = set(Label.objects.filter(project=project, pk__in=label_ids).values_list("pk", flat=True))
    for name, value in (("label", filters.label_id), ("live prediction", filters.prediction_id)):
        if value is not None and value not in known:
            raise DomainError(f"The {name} filter names label {value}, which is not a label of this project.")
    if filters.annotator_id is not None and filters.annotator_id not in {u.pk for u in project_annotators(project)}:
        raise DomainError(f"The annotator filter names user {filters.annotator_id}, who has no part in this project.")


def _status(items: QuerySet[Item], project: Project, status: str) -> QuerySet[Item]:
    if status == "unlabeled":
        return items.filter(label_count=0)
    if status == "labeled":
        return items.filter(label_count__gt=0)
    if status == "done":
        return items.filter(label_count__gt=0, queue_done=True)  # Uses index: item_labeled
    if status == "audit":
        return items.filter(Exists(Annotation.objects.filter(item_id=OuterRef("pk"), is_audit=True)))
    if status == "gold":
        return items.filter(gold_label__isnull=False)  # Uses index: item_gold
    if status in ("review", "disagreement"):
        return items.filter(pk__in=review_item_ids(project, kind="queue" if status == "review" else status))
    if status == "resolved":  # as review_items(kind="resolved"): labeled items a reviewer resolved
        labeled = Exists(Annotation.objects.filter(item_id=OuterRef("pk")))
        return items.filter(labeled, resolved_label__isnull=False)  # Uses index: item_resolved
    return items


def _filtered(project: Project, filters: ItemFilters, scoring: QueueScoring | None) -> QuerySet[Item]:
    """The project's items under the filters, unordered; with the live score as ``live`` when it is needed."""
    items = _status(Item.objects.filter(project=project), project, filters.status)
    if filters.label_id is not None:
        items = items.filter(label_count__gt=0).annotate(
            final_label=Coalesce("resolved_label_id", _majority(), output_field=BigIntegerField())
        ).filter(final_label=filters.label_id)
    if filters.annotator_id is not None:
        items = items.filter(
            Exists(Annotation.objects.filter(item_id=OuterRef("pk"), annotator_id=filters.annotator_id))
        )
    if filters.search:
        text = Q(external_id=filters.search)
        if len(filters.search) >= 3:  # Uses index: item_search_external_id, item_search_text (trigrams)
            text |= Q(external_id__icontains=filters.search) | Q(text__icontains=filters.search)
        items = items.filter(text)
    if filters.metadata:  # Uses index: item_metadata (GIN)
        items = items.filter(_metadata_condition(filters.metadata))
    if filters.needs_scoring():
        # The scoring's id goes in as a value, so that PostgreSQL reads only its partition.
        scoring_id = scoring.pk if scoring is not None else 0
        items = items.annotate(live=FilteredRelation("scores", condition=Q(scores__scoring_id=scoring_id)))
        # One filter() call: each further call on a to-many relation would join the score table again.
        live = Q(live__priority__isnull=False)
        if filters.prediction_id is not None:
            live &= Q(live__predicted_label_id=filters.prediction_id)
        if filters.confidence_min is not None:
            live &= Q(live__confidence__gte=filters.confidence_min)
        if filters.confidence_max is not None:
            live &= Q(live__confidence__lte=filters.confidence_max)
        items = items.filter(live)
    return items


ORDER = {
    "newest": ("-pk",),
    "oldest": ("pk",),
    "uncertainty": ("-live__priority", "pk"),
    "confidence": ("live__confidence", "pk"),
    "-confidence": ("-live__confidence", "pk"),
}


def _live_scores(scoring: QueueScoring | None, item_ids: list[int]) -> dict[int, tuple[int | None, float | None]]:
    """(predicted label, confidence) under the live scoring of those of the items it holds."""
    if scoring is None or not item_ids:
        return {}
    rows = ItemScore.objects.filter(scoring_id=scoring.pk, item_id__in=item_ids).values_list(
        "item_id", "predicted_label_id", "confidence"
    )
    return {item_id: (label_id, confidence) for item_id, label_id, confidence in rows}


def item_browse(project: Project, filters: ItemFilters, *, page: int = 1) -> ItemPage:
    """One page of the project's items under the filters and sort, with each one's labels and live prediction.

    The count stops at ``COUNT_MAX`` (``total_capped`` then says "more than"), and pages at ``DEPTH_MAX``:
    a million-item pool is browsed by narrowing the filters, not by paging through it.
    """
    if filters.status not in STATUSES:
        raise DomainError(f"Unknown status {filters.status!r}; choose one of the listed statuses.")
    if filters.sort not in SORTS:
        raise DomainError(f"Unknown sort {filters.sort!r}; choose one of the listed orders.")
    _check_ids(project, filters)
    scoring = scoring_current(project.pk)
    items = _filtered(project, filters, scoring)
    last_page = DEPTH_MAX // PAGE_SIZE
    number = min(max(page, 1), last_page)
    offset = (number - 1) * PAGE_SIZE
    annotations = Annotation.objects.select_related("annotator").order_by("id")
    rows = list(
        items.order_by(*ORDER[filters.sort]).select_related("resolved_label", "gold_label")
        .prefetch_related(Prefetch("annotations", queryset=annotations))[offset:offset + PAGE_SIZE + 1]
    )
    more = len(rows) > PAGE_SIZE and number < last_page
    rows = rows[:PAGE_SIZE]
    if len(rows) < PAGE_SIZE and (rows or number == 1):
        total, capped = offset + len(rows), False
    else:
        total = items.order_by()[:COUNT_MAX + 1].count()
        capped = total > COUNT_MAX
        total = max(min(total, COUNT_MAX), offset + len(rows))
    scores = _live_scores(scoring, [item.pk for item in rows])
    for item in rows:
        item.live_label_id, item.live_confidence = scores.get(item.pk, (None, None))
    labels = {label.pk: label for label in Label.objects.filter(project=project)}
    return ItemPage(rows, number, more, total, capped, scoring, labels)


def item_history(item: Item) -> dict[str, Any]:
    """An item's live prediction (under the served scoring, if that scored it) next to its labels' history."""
    scoring = scoring_current(item.project_id)
    live = _live_scores(scoring, [item.pk]).get(item.pk)
    label = Label.objects.filter(pk=live[0], project_id=item.project_id).first() if live and live[0] else None
    return {
        "scoring": scoring,
        "live_label": label,
        "live_confidence": live[1] if live else None,
        "scored": live is not None,
    }


def annotations_of_user(project: Project, user: AbstractBaseUser) -> QuerySet[Annotation]:
    """The user's labels in the project, newest first, with their items and any corrections."""
    corrections = AnnotationCorrection.objects.select_related("corrected_by", "previous_label", "new_label")
    return (
        Annotation.objects.filter(annotator=user, item__project=project)  # Uses index: annotation_user_recent
        .select_related("item", "label")
        .prefetch_related(Prefetch("corrections", queryset=corrections))
        .order_by("-created_at", "-pk")
    )


def own_annotation_get(project: Project, user: AbstractBaseUser, annotation_id: int) -> Annotation | None:
    """The user's own annotation with this id in the project, or None (another's label is not found)."""
    if not 0 < annotation_id < 2**63:
        return None
    return (
        Annotation.objects.select_related("item", "label")
        .filter(pk=annotation_id, annotator=user, item__project=project).first()
    )
