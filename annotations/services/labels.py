"""Writes of a project's label set beyond one label: default colours, a new project's labels, delete and merge."""
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from labelhub.api import Conflict, DomainError
from labelhub.celery import TaskName, send_task_on_commit

from ..models import Annotation, AnnotationCorrection, Item, ItemScore, Label, Lease, Project

# Tableau 10: ten colours told apart at a glance, also by most colour-blind readers; the 11th label
# and on get Tableau 20's lighter tints, so that the first twenty labels of a project all differ.
LABEL_PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
    "#a0cbe8", "#ffbe7d", "#ff9d9a", "#86bcb6", "#8cd17d", "#f1ce63", "#d4a6c8", "#fabfd2", "#d7b5a6", "#79706e",
)
LABELS_MAX = 200  # labels a project may have: more than any keyboard or screen of buttons can serve


def checked(obj: Project | Label) -> None:
    """Run the model's validation; its field errors become a 400 naming the fields."""
    try:
        obj.full_clean(validate_unique=True, validate_constraints=True)
    except ValidationError as exc:
        raise DomainError("Invalid input.", details=exc.message_dict) from None


def label_color_next(taken: Iterable[str]) -> str:
    """The first colour of the palette that no label in ``taken`` has (the palette again after twenty)."""
    used = {color.lower() for color in taken}
    free = [color for color in LABEL_PALETTE if color not in used]
    return free[0] if free else LABEL_PALETTE[len(used) % len(LABEL_PALETTE)]


def labels_create(*, project: Project, labels: list[Mapping[str, Any]]) -> list[Label]:
    """Add labels to the project in the given order; a colour left empty is the next free one of the palette.

    Call inside the caller's transaction: one bad label (a duplicate name or key, a bad colour)
    raises a DomainError naming it, and the caller's transaction stores none of them.
    """
    existing = list(project.labels.values_list("name", "shortcut", "color", "order"))
    if len(existing) + len(labels) > LABELS_MAX:
        raise DomainError(f"A project has at most {LABELS_MAX} labels.")
    names = {name.casefold() for name, *_ in existing}
    keys = {key.lower() for _, key, *_ in existing if key}
    colors = [color for *_, color, _ in existing]
    order = max((o for *_, o in existing), default=-1) + 1
    made = []
    for position, fields in enumerate(labels, start=1):
        name, key = fields.get("name", "").strip(), fields.get("shortcut", "")
        if name.casefold() in names:
            raise DomainError(f"Label {position}: another label is already named “{name}”.",
                              details={"labels": [f"Label {position}: duplicate name."]})
        if key and key.lower() in keys:
            raise DomainError(f"Label {position}: another label already has the key “{key}”.",
                              details={"labels": [f"Label {position}: duplicate key."]})
        color = fields.get("color") or label_color_next(colors)
        label = Label(project=project, name=name, shortcut=key, color=color, order=order)
        checked(label)
        names.add(name.casefold())
        keys.add(key.lower())
        colors.append(color)
        order += 1
        made.append(label)
    try:
        with transaction.atomic():
            return Label.objects.bulk_create(made)
    except IntegrityError:  # a concurrent request took a name or key between the check and the insert
        raise DomainError("A label with this name or shortcut already exists in the project.") from None


def label_usage(label: Label) -> dict[str, int]:
    """How the label is used: experts' annotations, reviewers' final labels, gold labels, corrections."""
    return {
        "annotations": Annotation.objects.filter(label=label).count(),
        "resolved": Item.objects.filter(resolved_label=label).count(),
        "gold": Item.objects.filter(gold_label=label).count(),
        "corrections": AnnotationCorrection.objects.filter(Q(previous_label=label) | Q(new_label=label)).count(),
    }


def _usage_sentence(usage: dict[str, int]) -> str:
    words = {"annotations": ("annotation", "annotations"), "resolved": ("reviewer's final label", "reviewers' final labels"),
             "gold": ("gold label", "gold labels"), "corrections": ("review correction", "review corrections")}
    parts = [f"{n} {words[k][n != 1]}" for k, n in usage.items() if n]
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def _scores_repoint(label: Label, to: Label | None) -> None:
    """Point the queue's stored suggestions of the label at another label (or none), so that deleting it drops no score.

    Deleting a label would otherwise cascade to every queue score that suggests it, and those
    items would leave the ranked queue until the pool is scored again.
    """
    ItemScore.objects.filter(predicted_label_id=label.pk).update(predicted_label_id=to.pk if to else None)


def label_delete(*, label: Label) -> None:
    """Delete a label nobody used; a label in use is refused with how it is used (merge it instead)."""
    with transaction.atomic():
        label = Label.objects.select_for_update().filter(pk=label.pk).first()
        if label is None:
            return
        usage = label_usage(label)
        if any(usage.values()):
            raise Conflict(
                f"“{label.name}” is used by {_usage_sentence(usage)}, so it cannot be deleted: "
                "merge it into another label instead, which moves them there."
            )
        _scores_repoint(label, None)
        label.delete()


def label_merge(*, label: Label, into: Label, user_id: int | None = None) -> dict[str, int]:
    """Move everything that names ``label`` to ``into`` (same project), delete ``label``, and ask for a retrain.

    The live model still has the merged label among its classes: its suggestions of it are moved
    to ``into`` in the stored queue scores, a later scoring's suggestion of it shows as none, and
    the retrain asked for here trains a model on the merged labels. Returns how the label was used.
    """
    if label.project_id != into.project_id or label.pk == into.pk:
        raise DomainError("Choose another label of this project to merge into.")
    with transaction.atomic():
        locked = {row.pk: row for row in Label.objects.select_for_update().filter(pk__in=[label.pk, into.pk])}
        if len(locked) != 2:
            raise Conflict("One of the two labels was just deleted; reload the page.")
        usage = label_usage(label)
        # An expert labels an item once (annotation_unique_item_annotator), so no expert holds both labels on an item.
        Annotation.objects.filter(label=label).update(label=into, updated_at=timezone.now())
        Annotation.objects.filter(predicted_label=label).update(predicted_label=into)
        Item.objects.filter(resolved_label=label).update(resolved_label=into)
        Item.objects.filter(gold_label=label).update(gold_label=into)
        AnnotationCorrection.objects.filter(previous_label=label).update(previous_label=into)
        AnnotationCorrection.objects.filter(new_label=label).update(new_label=into)
        Lease.objects.filter(predicted_label=label).update(predicted_label=into)
        _scores_repoint(label, into)
        label.delete()
        send_task_on_commit(TaskName.RETRAIN_REQUESTED, [label.project_id, user_id,
                                                          f"Label “{label.name}” merged into “{into.name}”."])
    return usage


def label_move(*, label: Label, step: int) -> None:
    """Move a label one place up (step -1) or down (step 1) in the project's order."""
    with transaction.atomic():
        labels = list(Label.objects.select_for_update().filter(project_id=label.project_id).order_by("order", "name"))
        index = next((i for i, row in enumerate(labels) if row.pk == label.pk), None)
        if index is None or not 0 <= index + step < len(labels):
            return
        labels[index], labels[index + step] = labels[index + step], labels[index]
        for position, row in enumerate(labels):
            if row.order != position:
                Label.objects.filter(pk=row.pk).update(order=position)


def label_order_next(project: Project) -> int:
    """The order after the project's last label."""
    last = project.labels.aggregate(last=Max("order"))["last"]
    return 0 if last is None else last + 1
