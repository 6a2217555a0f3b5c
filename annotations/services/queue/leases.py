"""A held lease: its time to live, and renewing, skipping and releasing it."""
import uuid
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from labelhub.api import Conflict

from ...models import LEASE_TTL_MAX_SECONDS, SKIP_REASON_MAX_CHARS, Item, Lease, Project
from ...selectors.queue import lease_get_for_user
from .sql import ACTIVE, lease_expiry_move

EXPIRED_TAKEN = "This item's lease expired and it may have gone to someone else."
NOT_ACTIVE = {
    Lease.Status.SUBMITTED: "This item was already labeled.",
    Lease.Status.SKIPPED: "This item was skipped.",
    Lease.Status.RELEASED: "This item was given back; ask for the next one.",
}


def lease_ttl(project: Project) -> timedelta:
    """Return how long a lease of the project lasts until renewed."""
    # Bounded again here: a value written past the model's validation must not make every lease overflow.
    return timedelta(seconds=min(project.lease_ttl_seconds, LEASE_TTL_MAX_SECONDS))


def lease_renew_unexpired(lease: Lease, project: Project) -> bool:
    """Extend a lease that is still active and unexpired; False if it no longer is."""
    now = timezone.now()
    expires_at = now + lease_ttl(project)
    if lease_expiry_move(lease.pk, expires_at=expires_at, now=now):
        lease.expires_at = expires_at
        return True
    return False


def lease_renew(*, lease_id: uuid.UUID | str, user: AbstractBaseUser) -> Lease:
    """Extend the user's lease by the project's TTL; 409 if it is answered, or expired and taken by others."""
    lease = lease_get_for_user(lease_id, user, related=("project",))
    if lease.status != ACTIVE:
        raise Conflict(NOT_ACTIVE[lease.status])
    if lease_renew_unexpired(lease, lease.project):
        return lease
    # Expired: keeping the item again is a new lease of it, so it goes through the item's lock.
    with transaction.atomic():
        item = Item.objects.select_for_update().only("pk", "label_count").get(pk=lease.item_id)
        status = Lease.objects.filter(pk=lease.pk).values_list("status", flat=True).get()
        if status != ACTIVE:
            raise Conflict(NOT_ACTIVE[status])
        now = timezone.now()
        others = Lease.objects.filter(item_id=item.pk, status=ACTIVE, expires_at__gt=now).exclude(user=user).count()
        if item.label_count + others >= lease.project.overlap:
            raise Conflict(EXPIRED_TAKEN)
        lease.expires_at = now + lease_ttl(lease.project)
        Lease.objects.filter(pk=lease.pk).update(expires_at=lease.expires_at)
    return lease


def lease_skip(*, lease_id: uuid.UUID | str, user: AbstractBaseUser, reason: str = "") -> Lease:
    """Give the item back and never serve it to this user again, with the expert's reason if they gave one.

    Skipping again changes nothing, the first reason included.
    """
    lease = lease_get_for_user(lease_id, user, related=())
    if lease.status != Lease.Status.SKIPPED:
        skippable = [ACTIVE, Lease.Status.RELEASED]
        reason = reason.strip()[:SKIP_REASON_MAX_CHARS]
        if Lease.objects.filter(pk=lease.pk, status__in=skippable).update(
            status=Lease.Status.SKIPPED, skip_reason=reason
        ):
            lease.skip_reason = reason
        else:
            status = Lease.objects.filter(pk=lease.pk).values_list("status", flat=True).get()
            if status != Lease.Status.SKIPPED:
                raise Conflict(NOT_ACTIVE[status])
        lease.status = Lease.Status.SKIPPED
    return lease


def lease_release(*, lease_id: uuid.UUID | str, user: AbstractBaseUser) -> Lease:
    """Give the item back unanswered (the page closed); a lease already answered or given back stays as it is."""
    lease = lease_get_for_user(lease_id, user, related=())
    if lease.status == ACTIVE:
        if Lease.objects.filter(pk=lease.pk, status=ACTIVE).update(status=Lease.Status.RELEASED):
            lease.status = Lease.Status.RELEASED
        else:
            lease.status = Lease.objects.filter(pk=lease.pk).values_list("status", flat=True).get()
    return lease
