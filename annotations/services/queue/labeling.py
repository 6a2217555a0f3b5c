"""Store an expert's label on their lease (once, whatever the retries), and undo their latest one."""
import uuid

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from labelhub import rows
from labelhub.api import Conflict, DomainError
from labelhub.celery import TaskName, send_task_on_commit

from ...models import Annotation, Item, Label, Lease, Project
from ...selectors.queue import lease_get_for_user
from ...selectors.scoring import scoring_current_id_sql
from .leases import EXPIRED_TAKEN, NOT_ACTIVE, lease_ttl
from .serving import suggestion_withheld
from .sql import ACTIVE, ITEMS, LABELS, LEASES, SCORES, label_subquery, lease_key, submit_in_one_statement

# A label's labels_added message goes out this many seconds after it, standing for every label
# of the project committed meanwhile (the count trigger and experiments then see them all at once).
LABELS_ADDED_COALESCE_SECONDS = 0.5


def _label_missing(label_id: int | None, label_name: str | None) -> DomainError:
    given = " / ".join(repr(v) for v in (label_id, label_name) if v is not None and v != "")
    return DomainError(f"{given} is not a label of this project.")


def _submitted_annotation(lease: Lease) -> Annotation:
    annotation = Annotation.objects.select_related("label").filter(lease_id=lease.pk).first()
    if annotation is None:
        raise Conflict("The label submitted on this lease was removed.")
    return annotation


def _labels_added(project: Project) -> None:
    send_task_on_commit(TaskName.LABELS_ADDED, [project.pk], coalesce_seconds=LABELS_ADDED_COALESCE_SECONDS)


def _queue_annotation(lease: Lease, user: AbstractBaseUser, time_spent_ms: int | None) -> Annotation:
    """The (unsaved, label-less) annotation a submit on the lease stores, with the suggestion the lease carried."""
    return Annotation(
        item_id=lease.item_id,
        annotator=user,
        source=Annotation.Source.QUEUE,
        time_spent_ms=time_spent_ms,
        is_audit=lease.is_audit,
        model_version=lease.model_version,
        predicted_label_id=lease.predicted_label_id,
        predicted_confidence=lease.predicted_confidence,
        lease=lease,
    )


def annotation_submit_or_get(
    *,
    lease_id: uuid.UUID | str,
    user: AbstractBaseUser,
    label_id: int | None = None,
    label_name: str | None = None,
    time_spent_ms: int | None = None,
) -> tuple[Annotation, bool]:
    """Store the user's label on their lease once; return the annotation on it and whether this call stored it."""
    lease = lease_get_for_user(lease_id, user, related=("project",), served_scoring=True)
    if lease.status == Lease.Status.SUBMITTED:
        return _submitted_annotation(lease), False
    label_sql, label_params = label_subquery(lease.project_id, label_id, label_name)
    if time_spent_ms is not None and not 0 <= time_spent_ms <= 2**31 - 1:
        raise DomainError("time_spent_ms must be a whole number of milliseconds from 0 to 2147483647.")
    project = lease.project
    try:
        if connection.vendor == "postgresql" and lease.status == ACTIVE:
            unsaved = _queue_annotation(lease, user, time_spent_ms)
            annotation = submit_in_one_statement(unsaved, lease, label_sql, label_params)
            if annotation is not None:
                _labels_added(project)
                lease.status = Lease.Status.SUBMITTED
                return annotation, True
        with transaction.atomic():
            lock = " FOR UPDATE OF i" if connection.features.has_select_for_update else ""
            # The served scoring's id comes along, for the score delete below to name its partition,
            # and the label, so that one statement both locks the item and reads what is needed.
            row = rows.fetch_one(
                f"SELECT i.label_count, ({scoring_current_id_sql('%s')}), {rows.columns(Label, 'b')}"
                f" FROM {ITEMS} i LEFT JOIN {LABELS} b ON b.id = {label_sql} WHERE i.id = %s{lock}",
                [project.pk, *label_params, lease.item_id],
            )
            label_count, served_scoring = row[:2]
            label = rows.build(Label, row, 2)[0]
            if label is None:
                raise _label_missing(label_id, label_name)
            submitted = rows.execute(
                f"UPDATE {LEASES} SET status = %s WHERE id = %s AND status = %s",
                [Lease.Status.SUBMITTED, lease_key(lease.pk), ACTIVE],
            )
            if not submitted:
                # Changed since read: a concurrent submit of the same lease (a double click) won, or a skip.
                status = Lease.objects.filter(pk=lease.pk).values_list("status", flat=True).get()
                if status == Lease.Status.SUBMITTED:
                    return _submitted_annotation(lease), False
                raise Conflict(NOT_ACTIVE[status])
            # Renewals only move expires_at later, so an expiry read before the lock that is still
            # ahead of a clock read under it is certain; otherwise others may have taken the item.
            now = timezone.now()
            if lease.expires_at <= now:
                others = Lease.objects.filter(item_id=lease.item_id, status=ACTIVE, expires_at__gt=now).exclude(user=user)
                if label_count + others.count() >= project.overlap:
                    raise Conflict(EXPIRED_TAKEN)
            annotation = _queue_annotation(lease, user, time_spent_ms)
            annotation.label = label
            rows.insert(annotation)
            label_count += 1
            done = label_count >= project.overlap
            rows.execute(
                f"UPDATE {ITEMS} SET label_count = %s, queue_done = %s WHERE id = %s", [label_count, done, lease.item_id]
            )
            if done and served_scoring is not None:
                # A done item is never asked again; without its score the priority walk of
                # ``sql.scored_candidate`` does not step over every item labeled since the scoring.
                # Its suggestion lives on in the annotation (model_version, predicted_*). Only the
                # served scoring's row: older scorings' rows are being dropped by their successor.
                # The scoring id goes in as a value, so that PostgreSQL plans (and locks) only that
                # scoring's partition; a subquery would be planned against every partition.
                rows.execute(
                    f"DELETE FROM {SCORES} WHERE scoring_id = %s AND item_id = %s", [served_scoring, lease.item_id]
                )
            _labels_added(project)
    except IntegrityError:
        # Only (item, annotator) is unique here: this expert labeled the item by another route.
        raise Conflict("You have already labeled this item.") from None
    lease.status = Lease.Status.SUBMITTED
    return annotation, True


def annotation_submit(
    *,
    lease_id: uuid.UUID | str,
    user: AbstractBaseUser,
    label_id: int | None = None,
    label_name: str | None = None,
    time_spent_ms: int | None = None,
) -> Annotation:
    """Store the user's label on their lease once; a repeated call returns the same annotation."""
    annotation, _ = annotation_submit_or_get(
        lease_id=lease_id, user=user, label_id=label_id, label_name=label_name, time_spent_ms=time_spent_ms
    )
    return annotation


def annotation_undo(*, project: Project, user: AbstractBaseUser) -> Lease | None:
    """Delete the user's latest queue label in the project and lease its item back to them; None if none."""
    latest = (
        Annotation.objects.filter(annotator=user, item__project=project, source=Annotation.Source.QUEUE)
        .order_by("-created_at", "-pk")
        .only("pk", "item_id")
        .first()
    )
    if latest is None:
        return None
    with transaction.atomic():
        item = Item.objects.select_for_update().only("pk", "label_count").get(pk=latest.item_id)
        annotation = Annotation.objects.filter(pk=latest.pk).select_related("lease").first()
        if annotation is None:
            # A concurrent undo (a double click) took it already: hand back what it leased.
            return (
                Lease.objects.filter(item_id=item.pk, user=user, status=ACTIVE)
                .select_related("item", "predicted_label")
                .first()
            )
        old_lease = annotation.lease
        annotation.delete()
        label_count = max(item.label_count - 1, 0)
        Item.objects.filter(pk=item.pk).update(label_count=label_count, queue_done=label_count >= project.overlap)
        # A retried submit on the old lease must not bring the label back, and the new lease must
        # be the user's only active one on the item.
        retire = Q(status=ACTIVE) | Q(pk=old_lease.pk) if old_lease is not None else Q(status=ACTIVE)
        Lease.objects.filter(retire, item_id=item.pk, user=user).update(status=Lease.Status.RELEASED)
        # The item comes back as it was served: with its suggestion shown or withheld as before.
        withheld = (
            old_lease.suggestion_withheld if old_lease is not None
            else suggestion_withheld(annotation.is_audit, project.audit_share)
        )
        lease = Lease.objects.create(
            project=project,
            item_id=item.pk,
            user=user,
            is_audit=annotation.is_audit,
            expires_at=timezone.now() + lease_ttl(project),
            model_version=annotation.model_version,
            priority=old_lease.priority if old_lease is not None else None,
            predicted_label_id=annotation.predicted_label_id,
            predicted_confidence=annotation.predicted_confidence,
            suggestion_withheld=withheld,
        )
    return Lease.objects.select_related("item", "predicted_label").get(pk=lease.pk)
