"""Serve the next item: the user's held lease, else a new lease of the most uncertain free item or an audit draw."""
import random
import uuid
from collections.abc import Collection
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from labelhub import rows
from labelhub.api import DomainError

from ...models import Item, Lease, Project, QueueScoring
from .leases import lease_renew_unexpired, lease_ttl
from .sql import (
    LEASES,
    item_free,
    lease_insert_if_free,
    leases_held_and_scoring,
    random_candidate,
    score_of,
    scored_candidate,
)

# The page holds the item on screen plus one prefetched; one more absorbs a retried request.
MAX_ACTIVE_LEASES = 3
# Candidates tried per pass; a candidate fails its re-check only when a concurrent lease won it.
MAX_ATTEMPTS = 50
# Until the first model is live, audit items are drawn at least this often. The gate lets the
# first model go live only on gate_min_audit_first audit labels, and audit labels come at the
# project's share whatever the pool's size: 10 audit labels at the default 10 % take about a
# hundred labels. At one in two they take about twenty, while the other half still serves the
# diverse seeds the first model learns from (simulated on a 200-item text pool, retraining every
# 25 labels: the first model went live after 100-125 labels at 10 %, after 25-75 at one in two).
# The project's share applies again once a model ranks the queue.
COLD_START_AUDIT_SHARE = 0.5
# Of the leases whose suggestion is withheld, this share are audit leases. Every audit lease
# withholds it (its label judges the model, so the model must not anchor it), and so does a
# random share w of the other leases, so that a missing suggestion does not give an audit item
# away: at audit share a, a half here means w = a / (1 - a), as many ordinary leases as audit
# ones (capped at all of them from a = 1/2 on), so a suggestion-less item is an audit item at
# even odds and experts cannot tell one from the other by what the page shows.
WITHHELD_AUDIT_FRACTION = 0.5
# How long the second, waiting pass of a next-item request waits for one row lock.
BLOCKING_LOCK_TIMEOUT_MS = 2000
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout expires


def _lease_ids(exclude: Collection[uuid.UUID | str]) -> set[uuid.UUID]:
    try:
        return {value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)) for value in exclude}
    except (TypeError, ValueError, AttributeError):
        raise DomainError("exclude must be a list of lease ids.") from None


def audit_share_effective(project: Project, scoring: QueueScoring | None) -> float:
    """The share of audit draws now: the project's, raised to COLD_START_AUDIT_SHARE until a model ranks the queue.

    The served scoring tells: none yet, or one by model version 0 (the seeding), means that no
    model has gone live, or that the first one's scoring has not completed.
    """
    if scoring is None or scoring.model_version == 0:
        return max(project.audit_share, COLD_START_AUDIT_SHARE)
    return project.audit_share


def withheld_share(audit_share: float) -> float:
    """The share of non-audit leases whose suggestion is withheld at this audit share (see WITHHELD_AUDIT_FRACTION)."""
    f = WITHHELD_AUDIT_FRACTION
    if audit_share >= 1.0:
        return 1.0
    return min(1.0, audit_share * (1 - f) / (f * (1 - audit_share)))


def suggestion_withheld(audit: bool, audit_share: float) -> bool:
    """Draw whether a lease hides its suggestion: always for an audit lease, else at ``withheld_share``."""
    return audit or random.random() < withheld_share(audit_share)


def _lease_attempt(
    *, project: Project, user: AbstractBaseUser, now: datetime, audit: bool, scoring: QueueScoring | None,
    start: float | None, tried: set[int], skip_locked: bool, withheld: bool = False,
) -> Lease | Item | None:
    """In one transaction, lock the best candidate and lease it if it is still free.

    Returns the new lease, the locked item if its re-check failed (so the caller tries another),
    or None when no candidate is left.
    """
    with transaction.atomic():
        if not skip_locked and connection.vendor == "postgresql":
            # Rows are held for milliseconds by other requests; a stuck transaction must not hang this one.
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{BLOCKING_LOCK_TIMEOUT_MS}ms'")
        found = None
        if scoring is not None and not audit:
            found = scored_candidate(
                scoring, project=project, user=user, now=now, tried=tried, skip_locked=skip_locked
            )
        if found is None:
            item = random_candidate(
                project=project, user=user, now=now, tried=tried, skip_locked=skip_locked, start=start
            )
            found = (item, None) if item is not None else None
        if found is None:
            return None
        item, score = found
        if score is None and scoring is not None:
            score = score_of(scoring, item)
        priority, label, confidence = score or (None, None, None)
        lease = Lease(
            project=project,
            item=item,
            user=user,
            is_audit=audit,
            expires_at=timezone.now() + lease_ttl(project),
            model_version=scoring.model_version if scoring is not None else None,
            priority=priority,
            predicted_label=label,
            predicted_confidence=confidence,
            suggestion_withheld=withheld,
        )
        if connection.vendor == "postgresql":
            free, inserted = lease_insert_if_free(lease, project=project, user=user, now=now)
            if inserted:
                lease._state.adding, lease._state.db = False, connection.alias
                return lease
            if not free:
                return item
        free, stale = item_free(item, project=project, user=user, now=now)
        if not free:
            return item
        if stale is not None:
            # Their own expired lease on the item gives way to the new one (one active per expert).
            rows.execute(f"UPDATE {LEASES} SET status = %s WHERE id = %s", [Lease.Status.RELEASED, stale])
        return rows.insert(lease)


def _lease_new(
    *, project: Project, user: AbstractBaseUser, now: datetime, audit: bool, scoring: QueueScoring | None,
    withheld: bool = False,
) -> Lease | None:
    """Lease the most uncertain free item (or a random one for an audit draw) to the user, or None.

    ``withheld``: the lease does not show its suggestion (its prediction is stored all the same).
    """
    start = random.random() if audit else None
    # SKIP LOCKED lets concurrent requests pass each other; when it finds nothing, rows that other
    # requests hold may still turn out free (their re-check failed), so look once more, waiting.
    passes = (True, False) if connection.features.has_select_for_update_skip_locked else (False,)
    for skip_locked in passes:
        tried: set[int] = set()
        for _ in range(MAX_ATTEMPTS):
            # One candidate per transaction, so a request never waits on a row while holding another.
            try:
                outcome = _lease_attempt(
                    project=project, user=user, now=now, audit=audit, scoring=scoring, start=start, tried=tried,
                    skip_locked=skip_locked, withheld=withheld,
                )
            except OperationalError as exc:
                if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
                break  # a row stayed locked past the timeout: treat it as taken
            if outcome is None:
                break
            if isinstance(outcome, Lease):
                return outcome
            tried.add(outcome.pk)
    return None


def queue_next(
    *, project: Project, user: AbstractBaseUser, exclude: Collection[uuid.UUID | str] = ()
) -> Lease | None:
    """Return the user's oldest held lease not in ``exclude``, else lease them the next item; None when none is left.

    The new item is the most uncertain free one of the newest complete scoring, or with
    probability ``audit_share_effective`` (the project's audit share, raised until a model ranks
    the queue) an audit item drawn uniformly from the unlabeled pool; without a scoring, or once
    its items run out, items come in random-key order. The lease withholds its suggestion if it
    is an audit lease, and with probability ``withheld_share`` otherwise.
    """
    excluded = _lease_ids(exclude)
    now = timezone.now()
    held, scoring = leases_held_and_scoring(project=project, user=user, now=now)
    for lease in held:
        if lease.pk not in excluded and lease_renew_unexpired(lease, project):
            return lease
    if len(held) >= MAX_ACTIVE_LEASES:
        for lease in held:
            if lease_renew_unexpired(lease, project):
                return lease
    share = audit_share_effective(project, scoring)
    audit = random.random() < share
    withheld = suggestion_withheld(audit, share)
    lease = _lease_new(project=project, user=user, now=now, audit=audit, scoring=scoring, withheld=withheld)
    if lease is not None:
        lease.project = project
    return lease

