"""The labeling queue: lease the next item to an expert, renew, skip, release, submit and undo."""
# Every write that leases or labels an item locks that item's row first, then re-checks its leases
# and labels with fresh statements: the lock serialises all lease creation per item, so no item is
# leased beyond the project's overlap, nor twice to one expert, whatever the concurrency.
import random
import uuid
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from labelhub import rows
from labelhub.api import Conflict, DomainError
from labelhub.celery import TaskName, send_task_on_commit

from ..models import LEASE_TTL_MAX_SECONDS, Annotation, Item, ItemScore, Label, Lease, Project, QueueScoring
from ..selectors.queue import lease_get_for_user
from ..selectors.scoring import head_condition, scoring_current_id_sql

# A label's labels_added message goes out this many seconds after it, standing for every label
# of the project committed meanwhile (the count trigger and experiments then see them all at once).
LABELS_ADDED_COALESCE_SECONDS = 0.5
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

EXPIRED_TAKEN = "This item's lease expired and it may have gone to someone else."
NOT_ACTIVE = {
    Lease.Status.SUBMITTED: "This item was already labeled.",
    Lease.Status.SKIPPED: "This item was skipped.",
    Lease.Status.RELEASED: "This item was given back; ask for the next one.",
}

ACTIVE = Lease.Status.ACTIVE


def _lease_ids(exclude: Collection[uuid.UUID | str]) -> set[uuid.UUID]:
    try:
        return {value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)) for value in exclude}
    except (TypeError, ValueError, AttributeError):
        raise DomainError("exclude must be a list of lease ids.") from None


def _ttl(project: Project) -> timedelta:
    # Bounded again here: a value written past the model's validation must not make every lease overflow.
    return timedelta(seconds=min(project.lease_ttl_seconds, LEASE_TTL_MAX_SECONDS))


# The statements of the hot path are written out in SQL: the ORM took several milliseconds to
# compile each of them, a large share of a next-item request. They run on PostgreSQL and SQLite.
_ITEM, _LEASE = Item._meta.db_table, Lease._meta.db_table
_ANNOTATION, _SCORE = Annotation._meta.db_table, ItemScore._meta.db_table
_SCORING = QueueScoring._meta.db_table
_LABEL = Label._meta.db_table

ScoreRow = tuple[float | None, Label | None, float | None]  # priority, predicted label, confidence



def _at(moment: datetime) -> Any:
    """A datetime as this database compares it (SQLite keeps them as text in its own format)."""
    return connection.ops.adapt_datetimefield_value(moment)


def _free_conditions(
    *, project: Project, user: AbstractBaseUser, now: datetime, tried: set[int]
) -> tuple[str, list[Any]]:
    """SQL conditions on item ``i`` keeping the items this user may be served now.

    They read the statement's snapshot, which may miss a lease committed just before the row
    lock was taken; ``_item_free`` re-checks under the lock.
    """
    active = f'SELECT {{}} FROM "{_LEASE}" l WHERE l.item_id = i.id AND l.status = %s AND l.expires_at > %s'
    conditions = [
        "i.queue_done = %s",
        "i.label_count < %s",
        f'NOT EXISTS (SELECT 1 FROM "{_ANNOTATION}" a WHERE a.item_id = i.id AND a.annotator_id = %s)',
        f'NOT EXISTS (SELECT 1 FROM "{_LEASE}" l WHERE l.item_id = i.id AND l.user_id = %s AND l.status = %s)',
    ]
    params: list[Any] = [False, project.overlap, user.pk, user.pk, Lease.Status.SKIPPED]
    if project.overlap == 1:
        conditions.append(f"NOT EXISTS ({active.format(1)})")
        params += [ACTIVE, _at(now)]
    else:
        conditions.append(f"NOT EXISTS ({active.format(1)} AND l.user_id = %s)")
        conditions.append(f"({active.format('COUNT(*)')}) < %s - i.label_count")
        params += [ACTIVE, _at(now), user.pk, ACTIVE, _at(now), project.overlap]
    if tried:
        conditions.append(f"i.id NOT IN ({', '.join(['%s'] * len(tried))})")
        params += sorted(tried)
    return " AND ".join(conditions), params


def _lock_clause(skip_locked: bool) -> str:
    if not connection.features.has_select_for_update:
        return ""  # SQLite: the IMMEDIATE transaction already holds the only write lock
    return " FOR UPDATE OF i SKIP LOCKED" if skip_locked else " FOR UPDATE OF i"


def _scored_candidate(
    scoring: QueueScoring, *, project: Project, user: AbstractBaseUser, now: datetime, tried: set[int],
    skip_locked: bool,
) -> tuple[Item, ScoreRow] | None:
    """Lock and return the free item of highest priority in the scoring, with its score and suggested label.

    While only the scoring's head is indexed (a large pool just scored), the head is walked
    first, and the rest of the pool only once no item of the head is free.
    """
    conditions, params = _free_conditions(project=project, user=user, now=now, tried=tried)
    head = head_condition(scoring, "s")
    for within in ([f"{head} AND "] if head else []) + [""]:
        sql = (
            f"SELECT s.priority, s.confidence, {rows.columns(Item, 'i')}, {rows.columns(Label, 'b')}"
            f' FROM "{_SCORE}" s INNER JOIN "{_ITEM}" i ON i.id = s.item_id'
            f' LEFT JOIN "{_LABEL}" b ON b.id = s.predicted_label_id'
            f" WHERE {within}s.scoring_id = %s AND {conditions} ORDER BY s.priority DESC LIMIT 1"
            f"{_lock_clause(skip_locked)}"
        )
        row = rows.fetch_one(sql, [scoring.pk, *params])
        if row is not None:
            break
    else:
        return None
    item, end = rows.build(Item, row, 2)
    label, _ = rows.build(Label, row, end)
    return item, (row[0], label, row[1])


def _score_of(scoring: QueueScoring, item: Item) -> ScoreRow | None:
    """The item's score in the scoring, with its suggested label; None if the scoring has none for it."""
    row = rows.fetch_one(
        f"SELECT s.priority, s.confidence, {rows.columns(Label, 'b')} FROM \"{_SCORE}\" s"
        f' LEFT JOIN "{_LABEL}" b ON b.id = s.predicted_label_id WHERE s.scoring_id = %s AND s.item_id = %s',
        [scoring.pk, item.pk],
    )
    return None if row is None else (row[0], rows.build(Label, row, 2)[0], row[1])


def _random_candidate(
    *, project: Project, user: AbstractBaseUser, now: datetime, tried: set[int], skip_locked: bool,
    start: float | None,
) -> Item | None:
    """Lock and return the free item of smallest random key (at or above ``start``, then wrapping around)."""
    conditions, params = _free_conditions(project=project, user=user, now=now, tried=tried)
    ranges = [(" AND i.random_key >= %s", [start]), (" AND i.random_key < %s", [start])] if start is not None else [
        ("", [])
    ]
    for key_range, key_params in ranges:
        sql = (
            f'SELECT {rows.columns(Item, "i")} FROM "{_ITEM}" i WHERE i.project_id = %s{key_range} AND {conditions}'
            f" ORDER BY i.random_key LIMIT 1{_lock_clause(skip_locked)}"
        )
        row = rows.fetch_one(sql, [project.pk, *key_params, *params])
        if row is not None:
            return rows.build(Item, row)[0]
    return None


def _item_check_sql(item: Item, *, user: AbstractBaseUser, now: datetime) -> tuple[str, list[Any]]:
    """A row of the locked item: its label count, others' active leases on it, whether the user labeled it,
    holds or skipped it, and the id of their expired lease on it (or NULL)."""
    mine = f'FROM "{_LEASE}" l WHERE l.item_id = i.id AND l.user_id = %s'
    sql = (
        f'SELECT i.label_count, (SELECT COUNT(*) FROM "{_LEASE}" l WHERE l.item_id = i.id AND l.status = %s'
        f" AND l.expires_at > %s AND l.user_id <> %s) AS others,"
        f' EXISTS (SELECT 1 FROM "{_ANNOTATION}" a WHERE a.item_id = i.id AND a.annotator_id = %s) AS labeled,'
        f" EXISTS (SELECT 1 {mine} AND (l.status = %s OR (l.status = %s AND l.expires_at > %s))) AS held,"
        f" (SELECT l.id {mine} AND l.status = %s AND l.expires_at <= %s LIMIT 1) AS stale"
        f' FROM "{_ITEM}" i WHERE i.id = %s'
    )
    at = _at(now)
    return sql, [ACTIVE, at, user.pk, user.pk, user.pk, Lease.Status.SKIPPED, ACTIVE, at, user.pk, ACTIVE, at, item.pk]


def _item_free(item: Item, *, project: Project, user: AbstractBaseUser, now: datetime) -> tuple[bool, Any]:
    """Whether the locked item may be leased to the user now, and their expired lease on it to retire (or None).

    A fresh statement under the item's lock sees every committed lease and label of the item.
    """
    sql, params = _item_check_sql(item, user=user, now=now)
    label_count, others, labeled, held, stale = rows.fetch_one(sql, params)
    return (not labeled and not held and label_count + others < project.overlap), stale


def _lease_insert_if_free(
    lease: Lease, *, project: Project, user: AbstractBaseUser, now: datetime
) -> tuple[bool, bool]:
    """PostgreSQL: ``_item_free``'s check and the lease's insert in one statement; whether the item was
    free and whether the lease went in (not if the user's own expired lease on it must be retired first)."""
    check, check_params = _item_check_sql(lease.item, user=user, now=now)
    columns, values, value_params = rows.insert_values(lease)
    free = "NOT c.labeled AND NOT c.held AND c.label_count + c.others < %s"
    row = rows.fetch_one(
        f"WITH c AS ({check}), ins AS (INSERT INTO \"{_LEASE}\" ({columns}) SELECT {values} FROM c"
        f" WHERE {free} AND c.stale IS NULL RETURNING 1) SELECT {free}, EXISTS (SELECT 1 FROM ins) FROM c",
        [*check_params, *value_params, project.overlap, project.overlap],
    )
    return row[0], row[1]


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


def _suggestion_withheld(audit: bool, audit_share: float) -> bool:
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
            found = _scored_candidate(
                scoring, project=project, user=user, now=now, tried=tried, skip_locked=skip_locked
            )
        if found is None:
            item = _random_candidate(
                project=project, user=user, now=now, tried=tried, skip_locked=skip_locked, start=start
            )
            found = (item, None) if item is not None else None
        if found is None:
            return None
        item, score = found
        if score is None and scoring is not None:
            score = _score_of(scoring, item)
        priority, label, confidence = score or (None, None, None)
        lease = Lease(
            project=project,
            item=item,
            user=user,
            is_audit=audit,
            expires_at=timezone.now() + _ttl(project),
            model_version=scoring.model_version if scoring is not None else None,
            priority=priority,
            predicted_label=label,
            predicted_confidence=confidence,
            suggestion_withheld=withheld,
        )
        if connection.vendor == "postgresql":
            free, inserted = _lease_insert_if_free(lease, project=project, user=user, now=now)
            if inserted:
                lease._state.adding, lease._state.db = False, connection.alias
                return lease
            if not free:
                return item
        free, stale = _item_free(item, project=project, user=user, now=now)
        if not free:
            return item
        if stale is not None:
            # Their own expired lease on the item gives way to the new one (one active per expert).
            rows.execute(f'UPDATE "{_LEASE}" SET status = %s WHERE id = %s', [Lease.Status.RELEASED, stale])
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


def _renew_unexpired(lease: Lease, project: Project) -> bool:
    """Extend a lease that is still active and unexpired; False if it no longer is."""
    now = timezone.now()
    expires_at = now + _ttl(project)
    renewed = rows.execute(
        f'UPDATE "{_LEASE}" SET expires_at = %s WHERE id = %s AND status = %s AND expires_at > %s',
        [_at(expires_at), _lease_key(lease.pk), ACTIVE, _at(now)],
    )
    if renewed:
        lease.expires_at = expires_at
        return True
    return False


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
    held, scoring = _leases_held_and_scoring(project=project, user=user, now=now)
    for lease in held:
        if lease.pk not in excluded and _renew_unexpired(lease, project):
            return lease
    if len(held) >= MAX_ACTIVE_LEASES:
        for lease in held:
            if _renew_unexpired(lease, project):
                return lease
    share = audit_share_effective(project, scoring)
    audit = random.random() < share
    withheld = _suggestion_withheld(audit, share)
    lease = _lease_new(project=project, user=user, now=now, audit=audit, scoring=scoring, withheld=withheld)
    if lease is not None:
        lease.project = project
    return lease


def _lease_key(lease_id: uuid.UUID) -> Any:
    return Lease._meta.pk.get_db_prep_value(lease_id, connection)


def _leases_held_and_scoring(
    *, project: Project, user: AbstractBaseUser, now: datetime
) -> tuple[list[Lease], QueueScoring | None]:
    """The user's active, unexpired leases in the project, oldest first, with their items and suggested
    labels; and the scoring the queue serves from. One statement: a row per lease, or one row of
    NULLs beside the scoring when the user holds none."""
    sql = (
        f"SELECT {rows.columns(QueueScoring, 's')}, {rows.columns(Lease, 'l')}, {rows.columns(Item, 'i')},"
        f" {rows.columns(Label, 'b')} FROM (SELECT 1 AS one) o"
        f' LEFT JOIN "{_SCORING}" s ON s.id = ({scoring_current_id_sql("%s")})'
        f' LEFT JOIN "{_LEASE}" l ON l.user_id = %s AND l.project_id = %s AND l.status = %s AND l.expires_at > %s'
        f' LEFT JOIN "{_ITEM}" i ON i.id = l.item_id'
        f' LEFT JOIN "{_LABEL}" b ON b.id = l.predicted_label_id'
        " ORDER BY l.created_at"
    )
    held, scoring = [], None
    with connection.cursor() as cursor:
        cursor.execute(sql, [project.pk, user.pk, project.pk, ACTIVE, _at(now)])
        for row in cursor.fetchall():
            scoring, end = rows.build(QueueScoring, row)
            lease, end = rows.build(Lease, row, end)
            if lease is None:
                continue
            lease.item, end = rows.build(Item, row, end)
            lease.predicted_label, _ = rows.build(Label, row, end)
            lease.project = project
            held.append(lease)
    return held, scoring


def lease_renew(*, lease_id: uuid.UUID | str, user: AbstractBaseUser) -> Lease:
    """Extend the user's lease by the project's TTL; 409 if it is answered, or expired and taken by others."""
    lease = lease_get_for_user(lease_id, user, related=("project",))
    if lease.status != ACTIVE:
        raise Conflict(NOT_ACTIVE[lease.status])
    if _renew_unexpired(lease, lease.project):
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
        lease.expires_at = now + _ttl(lease.project)
        Lease.objects.filter(pk=lease.pk).update(expires_at=lease.expires_at)
    return lease


def _label_sql(project_id: int, label_id: int | None, label_name: str | None) -> tuple[str, list[Any]]:
    """A subquery for the id of the project's label given by id and/or name (the lowest id matching both)."""
    if label_id is None and not label_name:
        raise DomainError("Choose a label: send label_id or label (its name).")
    sql = (
        f'(SELECT b2.id FROM "{_LABEL}" b2 WHERE b2.project_id = %s AND (%s OR b2.id = %s)'
        " AND (%s OR b2.name = %s) ORDER BY b2.id LIMIT 1)"
    )
    return sql, [project_id, label_id is None, label_id, not label_name, label_name or ""]


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


def _submit_in_one_statement(
    lease: Lease, user: AbstractBaseUser, label_sql: str, label_params: list[Any], time_spent_ms: int | None
) -> Annotation | None:
    """PostgreSQL, the usual submit: the lease active and unexpired, the label the project's. Stored in one
    statement, atomic by itself (no round trips to begin and commit); None, with nothing written, otherwise.

    The statement marks the lease submitted only while it is active, unexpired and the label
    exists, and everything else hangs on that row: the annotation, the item's count (its row lock
    serialises this with leasing the item, as the general path's lock does) and, once the item is
    done, its score in the served scoring (whose id goes in as a value, so that only that
    partition is planned and locked).
    """
    annotation = _queue_annotation(lease, user, time_spent_ms)
    columns, values, value_params = rows.insert_values(annotation, label_id="up.label_id")
    sql = (
        f'WITH up AS (UPDATE "{_LEASE}" l SET status = %s FROM (SELECT {label_sql} AS label_id) b'
        " WHERE l.id = %s AND l.status = %s AND l.expires_at > %s AND b.label_id IS NOT NULL RETURNING b.label_id),"
        f' ins AS (INSERT INTO "{_ANNOTATION}" ({columns}) SELECT {values} FROM up RETURNING id, label_id),'
        f' it AS (UPDATE "{_ITEM}" SET label_count = label_count + 1, queue_done = label_count + 1 >= %s'
        " WHERE id = %s AND EXISTS (SELECT 1 FROM ins) RETURNING queue_done)"
    )
    params = [
        Lease.Status.SUBMITTED, *label_params, _lease_key(lease.pk), ACTIVE, _at(timezone.now()),
        *value_params, lease.project.overlap, lease.item_id,
    ]
    if lease.served_scoring_id is not None:
        sql += (
            f', del AS (DELETE FROM "{_SCORE}" WHERE scoring_id = %s AND item_id = %s'
            " AND EXISTS (SELECT 1 FROM it WHERE it.queue_done))"
        )
        params += [lease.served_scoring_id, lease.item_id]
    sql += f' SELECT ins.id, {rows.columns(Label, "b")} FROM ins INNER JOIN "{_LABEL}" b ON b.id = ins.label_id'
    row = rows.fetch_one(sql, params)
    if row is None:
        return None
    annotation.pk = row[0]
    annotation.label = rows.build(Label, row, 1)[0]
    annotation._state.adding, annotation._state.db = False, connection.alias
    return annotation


def annotation_submit_or_get(
    *,
    lease_id: uuid.UUID | str,
    user: AbstractBaseUser,
    label_id: int | None = None,
    label_name: str | None = None,
    time_spent_ms: int | None = None,
) -> tuple[Annotation, bool]:
    """Store the user's label for the item of their lease, or return the one already stored on it.

    Returns the annotation and whether this call created it.
    """
    lease = lease_get_for_user(lease_id, user, related=("project",), served_scoring=True)
    if lease.status == Lease.Status.SUBMITTED:
        return _submitted_annotation(lease), False
    label_sql, label_params = _label_sql(lease.project_id, label_id, label_name)
    if time_spent_ms is not None and not 0 <= time_spent_ms <= 2**31 - 1:
        raise DomainError("time_spent_ms must be a whole number of milliseconds from 0 to 2147483647.")
    project = lease.project
    try:
        if connection.vendor == "postgresql" and lease.status == ACTIVE:
            annotation = _submit_in_one_statement(lease, user, label_sql, label_params, time_spent_ms)
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
                f' FROM "{_ITEM}" i LEFT JOIN "{_LABEL}" b ON b.id = {label_sql} WHERE i.id = %s{lock}',
                [project.pk, *label_params, lease.item_id],
            )
            label_count, served_scoring = row[:2]
            label = rows.build(Label, row, 2)[0]
            if label is None:
                raise _label_missing(label_id, label_name)
            submitted = rows.execute(
                f'UPDATE "{_LEASE}" SET status = %s WHERE id = %s AND status = %s',
                [Lease.Status.SUBMITTED, _lease_key(lease.pk), ACTIVE],
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
                f'UPDATE "{_ITEM}" SET label_count = %s, queue_done = %s WHERE id = %s', [label_count, done, lease.item_id]
            )
            if done and served_scoring is not None:
                # A done item is never asked again; without its score the priority walk of
                # ``_scored_candidate`` does not step over every item labeled since the scoring.
                # Its suggestion lives on in the annotation (model_version, predicted_*). Only the
                # served scoring's row: older scorings' rows are being dropped by their successor.
                # The scoring id goes in as a value, so that PostgreSQL plans (and locks) only that
                # scoring's partition; a subquery would be planned against every partition.
                rows.execute(
                    f'DELETE FROM "{_SCORE}" WHERE scoring_id = %s AND item_id = %s', [served_scoring, lease.item_id]
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


def lease_skip(*, lease_id: uuid.UUID | str, user: AbstractBaseUser) -> Lease:
    """Give the item back and never serve it to this user again."""
    lease = lease_get_for_user(lease_id, user, related=())
    if lease.status != Lease.Status.SKIPPED:
        skippable = [ACTIVE, Lease.Status.RELEASED]
        if not Lease.objects.filter(pk=lease.pk, status__in=skippable).update(status=Lease.Status.SKIPPED):
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
            else _suggestion_withheld(annotation.is_audit, project.audit_share)
        )
        lease = Lease.objects.create(
            project=project,
            item_id=item.pk,
            user=user,
            is_audit=annotation.is_audit,
            expires_at=timezone.now() + _ttl(project),
            model_version=annotation.model_version,
            priority=old_lease.priority if old_lease is not None else None,
            predicted_label_id=annotation.predicted_label_id,
            predicted_confidence=annotation.predicted_confidence,
            suggestion_withheld=withheld,
        )
    return Lease.objects.select_related("item", "predicted_label").get(pk=lease.pk)


def project_overlap_apply(project: Project) -> int:
    """Mark the project's items done or not again after its overlap changed; the number of items that changed.

    Raising the overlap puts labeled items back in the queue; their scores were dropped when
    they were done, so the pool is rescored (after commit) for the queue to rank them again.
    """
    with transaction.atomic():
        reopened = rows.execute(
            f'UPDATE "{_ITEM}" SET queue_done = %s WHERE project_id = %s AND queue_done = %s AND label_count < %s',
            [False, project.pk, True, project.overlap],
        )
        closed = rows.execute(
            f'UPDATE "{_ITEM}" SET queue_done = %s WHERE project_id = %s AND queue_done = %s AND label_count >= %s',
            [True, project.pk, False, project.overlap],
        )
        if reopened:
            send_task_on_commit(TaskName.SCORE_POOL, [project.pk])
    return reopened + closed
