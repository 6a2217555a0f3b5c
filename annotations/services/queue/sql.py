"""The queue's hot-path statements in plain SQL, every table name quoted by ``rows.qn``."""
# The statements of the hot path are written out in SQL: the ORM took several milliseconds to
# compile each of them, a large share of a next-item request. They run on PostgreSQL and SQLite.
import uuid
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.utils import timezone

from labelhub import rows
from labelhub.api import DomainError

from ...models import Annotation, Item, ItemScore, Label, Lease, Project, QueueScoring
from ...selectors.scoring import head_condition, scoring_current_id_sql

ITEMS, LEASES = rows.qn(Item._meta.db_table), rows.qn(Lease._meta.db_table)
ANNOTATIONS, SCORES = rows.qn(Annotation._meta.db_table), rows.qn(ItemScore._meta.db_table)
LABELS = rows.qn(Label._meta.db_table)
_SCORING = QueueScoring._meta.db_table

ACTIVE = Lease.Status.ACTIVE

ScoreRow = tuple[float | None, Label | None, float | None]  # priority, predicted label, confidence


def _at(moment: datetime) -> Any:
    """A datetime as this database compares it (SQLite keeps them as text in its own format)."""
    return connection.ops.adapt_datetimefield_value(moment)


def lease_key(lease_id: uuid.UUID) -> Any:
    """A lease id as this database stores it (SQLite: 32 hex digits)."""
    return Lease._meta.pk.get_db_prep_value(lease_id, connection)


def _free_conditions(
    *, project: Project, user: AbstractBaseUser, now: datetime, tried: set[int]
) -> tuple[str, list[Any]]:
    """SQL conditions on item ``i`` keeping the items this user may be served now.

    They read the statement's snapshot, which may miss a lease committed just before the row
    lock was taken; ``item_free`` re-checks under the lock.
    """
    active = f"SELECT {{}} FROM {LEASES} l WHERE l.item_id = i.id AND l.status = %s AND l.expires_at > %s"
    conditions = [
        "i.queue_done = %s",
        "i.label_count < %s",
        f"NOT EXISTS (SELECT 1 FROM {ANNOTATIONS} a WHERE a.item_id = i.id AND a.annotator_id = %s)",
        f"NOT EXISTS (SELECT 1 FROM {LEASES} l WHERE l.item_id = i.id AND l.user_id = %s AND l.status = %s)",
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


def scored_candidate(
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
            f" FROM {SCORES} s INNER JOIN {ITEMS} i ON i.id = s.item_id"
            f" LEFT JOIN {LABELS} b ON b.id = s.predicted_label_id"
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


def score_of(scoring: QueueScoring, item: Item) -> ScoreRow | None:
    """Return the item's score in the scoring, with its suggested label; None if the scoring has none for it."""
    row = rows.fetch_one(
        f"SELECT s.priority, s.confidence, {rows.columns(Label, 'b')} FROM {SCORES} s"
        f" LEFT JOIN {LABELS} b ON b.id = s.predicted_label_id WHERE s.scoring_id = %s AND s.item_id = %s",
        [scoring.pk, item.pk],
    )
    return None if row is None else (row[0], rows.build(Label, row, 2)[0], row[1])


def random_candidate(
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
            f'SELECT {rows.columns(Item, "i")} FROM {ITEMS} i WHERE i.project_id = %s{key_range} AND {conditions}'
            f" ORDER BY i.random_key LIMIT 1{_lock_clause(skip_locked)}"
        )
        row = rows.fetch_one(sql, [project.pk, *key_params, *params])
        if row is not None:
            return rows.build(Item, row)[0]
    return None


def _item_check_sql(item: Item, *, user: AbstractBaseUser, now: datetime) -> tuple[str, list[Any]]:
    """A row of the locked item: its label count, others' active leases on it, whether the user labeled it,
    holds or skipped it, and the id of their expired lease on it (or NULL)."""
    mine = f"FROM {LEASES} l WHERE l.item_id = i.id AND l.user_id = %s"
    sql = (
        f"SELECT i.label_count, (SELECT COUNT(*) FROM {LEASES} l WHERE l.item_id = i.id AND l.status = %s"
        f" AND l.expires_at > %s AND l.user_id <> %s) AS others,"
        f" EXISTS (SELECT 1 FROM {ANNOTATIONS} a WHERE a.item_id = i.id AND a.annotator_id = %s) AS labeled,"
        f" EXISTS (SELECT 1 {mine} AND (l.status = %s OR (l.status = %s AND l.expires_at > %s))) AS held,"
        f" (SELECT l.id {mine} AND l.status = %s AND l.expires_at <= %s LIMIT 1) AS stale"
        f" FROM {ITEMS} i WHERE i.id = %s"
    )
    at = _at(now)
    return sql, [ACTIVE, at, user.pk, user.pk, user.pk, Lease.Status.SKIPPED, ACTIVE, at, user.pk, ACTIVE, at, item.pk]


def item_free(item: Item, *, project: Project, user: AbstractBaseUser, now: datetime) -> tuple[bool, Any]:
    """Return whether the locked item may be leased to the user now, and their expired lease on it to retire (or None).

    A fresh statement under the item's lock sees every committed lease and label of the item.
    """
    sql, params = _item_check_sql(item, user=user, now=now)
    label_count, others, labeled, held, stale = rows.fetch_one(sql, params)
    return (not labeled and not held and label_count + others < project.overlap), stale


def lease_insert_if_free(
    lease: Lease, *, project: Project, user: AbstractBaseUser, now: datetime
) -> tuple[bool, bool]:
    """PostgreSQL: ``item_free``'s check and the lease's insert in one statement; return whether the item was
    free and whether the lease went in (not if the user's own expired lease on it must be retired first)."""
    check, check_params = _item_check_sql(lease.item, user=user, now=now)
    columns, values, value_params = rows.insert_values(lease)
    free = "NOT c.labeled AND NOT c.held AND c.label_count + c.others < %s"
    row = rows.fetch_one(
        f"WITH c AS ({check}), ins AS (INSERT INTO {LEASES} ({columns}) SELECT {values} FROM c"
        f" WHERE {free} AND c.stale IS NULL RETURNING 1) SELECT {free}, EXISTS (SELECT 1 FROM ins) FROM c",
        [*check_params, *value_params, project.overlap, project.overlap],
    )
    return row[0], row[1]


def lease_expiry_move(lease_id: uuid.UUID, *, expires_at: datetime, now: datetime) -> bool:
    """Move the lease's expiry to ``expires_at`` if it is still active and unexpired at ``now``; whether it was."""
    return bool(rows.execute(
        f"UPDATE {LEASES} SET expires_at = %s WHERE id = %s AND status = %s AND expires_at > %s",
        [_at(expires_at), lease_key(lease_id), ACTIVE, _at(now)],
    ))


def leases_held_and_scoring(
    *, project: Project, user: AbstractBaseUser, now: datetime
) -> tuple[list[Lease], QueueScoring | None]:
    """Return the user's active, unexpired leases in the project, oldest first, with their items and suggested
    labels; and the scoring the queue serves from. One statement: a row per lease, or one row of
    NULLs beside the scoring when the user holds none."""
    sql = (
        f"SELECT {rows.columns(QueueScoring, 's')}, {rows.columns(Lease, 'l')}, {rows.columns(Item, 'i')},"
        f" {rows.columns(Label, 'b')} FROM (SELECT 1 AS one) o"
        f' LEFT JOIN "{_SCORING}" s ON s.id = ({scoring_current_id_sql("%s")})'
        f" LEFT JOIN {LEASES} l ON l.user_id = %s AND l.project_id = %s AND l.status = %s AND l.expires_at > %s"
        f" LEFT JOIN {ITEMS} i ON i.id = l.item_id"
        f" LEFT JOIN {LABELS} b ON b.id = l.predicted_label_id"
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


def label_subquery(project_id: int, label_id: int | None, label_name: str | None) -> tuple[str, list[Any]]:
    """Return a subquery for the id of the project's label given by id and/or name (the lowest id matching both)."""
    if label_id is None and not label_name:
        raise DomainError("Choose a label: send label_id or label (its name).")
    sql = (
        f"(SELECT b2.id FROM {LABELS} b2 WHERE b2.project_id = %s AND (%s OR b2.id = %s)"
        " AND (%s OR b2.name = %s) ORDER BY b2.id LIMIT 1)"
    )
    return sql, [project_id, label_id is None, label_id, not label_name, label_name or ""]


def submit_in_one_statement(
    annotation: Annotation, lease: Lease, label_sql: str, label_params: list[Any]
) -> Annotation | None:
    """PostgreSQL, the usual submit: the lease active and unexpired, the label the project's. Store the
    (label-less) annotation in one statement, atomic by itself (no round trips to begin and commit);
    None, with nothing written, otherwise.

    The statement marks the lease submitted only while it is active, unexpired and the label
    exists, and everything else hangs on that row: the annotation, the item's count (its row lock
    serialises this with leasing the item, as the general path's lock does) and, once the item is
    done, its score in the served scoring (whose id goes in as a value, so that only that
    partition is planned and locked).
    """
    columns, values, value_params = rows.insert_values(annotation, label_id="up.label_id")
    sql = (
        f"WITH up AS (UPDATE {LEASES} l SET status = %s FROM (SELECT {label_sql} AS label_id) b"
        " WHERE l.id = %s AND l.status = %s AND l.expires_at > %s AND b.label_id IS NOT NULL RETURNING b.label_id),"
        f" ins AS (INSERT INTO {ANNOTATIONS} ({columns}) SELECT {values} FROM up RETURNING id, label_id),"
        f" it AS (UPDATE {ITEMS} SET label_count = label_count + 1, queue_done = label_count + 1 >= %s"
        " WHERE id = %s AND EXISTS (SELECT 1 FROM ins) RETURNING queue_done)"
    )
    params = [
        Lease.Status.SUBMITTED, *label_params, lease_key(lease.pk), ACTIVE, _at(timezone.now()),
        *value_params, lease.project.overlap, lease.item_id,
    ]
    if lease.served_scoring_id is not None:
        sql += (
            f", del AS (DELETE FROM {SCORES} WHERE scoring_id = %s AND item_id = %s"
            " AND EXISTS (SELECT 1 FROM it WHERE it.queue_done))"
        )
        params += [lease.served_scoring_id, lease.item_id]
    sql += f' SELECT ins.id, {rows.columns(Label, "b")} FROM ins INNER JOIN {LABELS} b ON b.id = ins.label_id'
    row = rows.fetch_one(sql, params)
    if row is None:
        return None
    annotation.pk = row[0]
    annotation.label = rows.build(Label, row, 1)[0]
    annotation._state.adding, annotation._state.db = False, connection.alias
    return annotation
