"""Writes of the review workflow: resolve an item's final label, correct an expert's label, mark gold items."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from labelhub.api import DomainError

from ..models import Annotation, AnnotationCorrection, Item, Label

NOTE_MAX = 500


def _project_label(item: Item, label: Label) -> None:
    if label.project_id != item.project_id:
        raise DomainError(f"{label.name!r} is not a label of this item's project.")


def item_resolve(*, item: Item, label: Label | None, user: AbstractBaseUser) -> Item:
    """Set the item's final label (training and export use it over the majority); None clears it."""
    with transaction.atomic():
        locked = Item.objects.select_for_update().get(pk=item.pk)
        if label is None:
            locked.resolved_label, locked.resolved_by, locked.resolved_at = None, None, None
        else:
            _project_label(locked, label)
            if not Annotation.objects.filter(item_id=locked.pk).exists():
                raise DomainError("This item has no labels yet; there is nothing to resolve.")
            locked.resolved_label, locked.resolved_by, locked.resolved_at = label, user, timezone.now()
        locked.save(update_fields=["resolved_label", "resolved_by", "resolved_at"])
    item.resolved_label, item.resolved_by, item.resolved_at = (
        locked.resolved_label, locked.resolved_by, locked.resolved_at
    )
    return item


def annotation_correct(
    *, annotation: Annotation, label: Label, user: AbstractBaseUser, note: str = ""
) -> AnnotationCorrection:
    """Change an expert's label and record who changed it, when, and the label before."""
    if len(note) > NOTE_MAX:
        raise DomainError(f"The note is {len(note):,} characters; keep it under {NOTE_MAX}.")
    with transaction.atomic():
        locked = Annotation.objects.select_for_update().select_related("item").get(pk=annotation.pk)
        _project_label(locked.item, label)
        if locked.label_id == label.pk:
            raise DomainError(f"This label is already {label.name!r}.")
        correction = AnnotationCorrection.objects.create(
            annotation=locked, corrected_by=user, previous_label_id=locked.label_id, new_label=label, note=note,
        )
        Annotation.objects.filter(pk=locked.pk).update(label=label, updated_at=timezone.now())
    annotation.label = label
    return correction


def item_gold_set(*, item: Item, label: Label | None) -> Item:
    """Make the item a gold item with this known label, or an ordinary item again (None)."""
    if label is not None:
        _project_label(item, label)
    Item.objects.filter(pk=item.pk).update(gold_label=label)
    item.gold_label = label
    return item


def annotation_change_own(*, annotation: Annotation, label: Label, user: AbstractBaseUser) -> AnnotationCorrection:
    """Change the expert's own label, recorded as a correction by them; counts and the queue stay as they are.

    Refused when a reviewer resolved the item (their final label stands) or corrected this label
    (the expert would undo a review). Gold and audit items are changed like any other: refusing
    would tell the expert which items are gold or audit. Agreement and gold accuracy keep reading
    the label as first given (the first correction's previous label).
    """
    if annotation.annotator_id != user.pk:
        raise DomainError("Only the expert who gave a label may change it here.")
    with transaction.atomic():
        # The item's row first: a reviewer's resolve locks it too, so the check below stays true until commit.
        item = Item.objects.select_for_update().only("pk", "resolved_label_id").get(pk=annotation.item_id)
        if item.resolved_label_id is not None:
            raise DomainError("A reviewer has set this item's final label; ask a reviewer to change it.")
        if AnnotationCorrection.objects.filter(annotation_id=annotation.pk).exclude(corrected_by=user).exists():
            raise DomainError("A reviewer corrected this label; ask a reviewer to change it.")
        return annotation_correct(annotation=annotation, label=label, user=user, note="Changed by the expert.")
