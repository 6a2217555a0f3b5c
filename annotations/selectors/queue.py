"""Reads of the labeling queue: an expert's leases, the scoring the queue serves from, and progress."""
import uuid
from collections.abc import Callable
from datetime import datetime, time
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import connection
from django.db.models import Exists, OuterRef
from django.utils import timezone

from labelhub import rows
from labelhub.api import NotFound

from ..models import Annotation, Item, Lease, Membership, Project
from .scoring import scoring_current, scoring_current_id_sql

# Progress counts at or above these sizes are cached for a while (see _count_cached).
POOL_CACHED_FROM = 50_000
POOL_CACHE_SECONDS = 60
LABELED_CACHED_FROM = 20_000
LABELED_CACHE_SECONDS = 10


def lease_get_for_user(
    lease_id: uuid.UUID | str,
    user: AbstractBaseUser,
    *,
    related: tuple[str, ...] = ("project", "item", "predicted_label"),
    served_scoring: bool = False,
) -> Lease:
    """Return the user's lease (with project, item and suggested label) while they may label there; else 404.

    Writes that need only the project pass ``related=("project",)``: fewer joined rows to build.
    ``served_scoring`` (with such ``related``): also set ``lease.served_scoring_id``, the id of the
    project's newest complete scoring as the same statement read it (None if there is none).
    """
    try:
        lease_uuid = lease_id if isinstance(lease_id, uuid.UUID) else uuid.UUID(str(lease_id))
    except ValueError:
        raise NotFound("Lease not found.") from None
    if set(related) <= {"project"}:
        lease = _lease_row(lease_uuid, user, with_project=bool(related), served_scoring=served_scoring)
    else:
        leases = Lease.objects.filter(pk=lease_uuid, user=user)
        if related:  # select_related() with no names would follow every relation
            leases = leases.select_related(*related)
        if not user.is_staff:
            # A removed member keeps their lease rows but may no longer use them; nor may one made an API client.
            member = Membership.objects.filter(project_id=OuterRef("project_id"), user=user)
            leases = leases.filter(Exists(member.exclude(role=Membership.Role.CLIENT)))
        lease = leases.first()
    if lease is None:
        raise NotFound("Lease not found.")
    return lease


def _lease_row(
    lease_id: uuid.UUID, user: AbstractBaseUser, *, with_project: bool, served_scoring: bool = False
) -> Lease | None:
    """The lease (and its project) in one statement: what every submit, skip and release reads first."""
    q = rows.qn
    select, joins, params = rows.columns(Lease, "l"), "", []
    if with_project:
        select += f", {rows.columns(Project, 'p')}"
        joins = f" INNER JOIN {q(Project._meta.db_table)} p ON p.{q('id')} = l.{q('project_id')}"
    if served_scoring:
        select += f", ({scoring_current_id_sql('l.' + q('project_id'))})"
    params += [_db_uuid(lease_id), user.pk]
    sql = f"SELECT {select} FROM {q(Lease._meta.db_table)} l{joins} WHERE l.{q('id')} = %s AND l.{q('user_id')} = %s"
    if not user.is_staff:
        sql += (
            f" AND EXISTS (SELECT 1 FROM {q(Membership._meta.db_table)} m WHERE m.{q('project_id')} = l.{q('project_id')}"
            f" AND m.{q('user_id')} = %s AND m.{q('role')} <> %s)"
        )
        params += [user.pk, Membership.Role.CLIENT]
    row = rows.fetch_one(sql, params)
    if row is None:
        return None
    lease, end = rows.build(Lease, row)
    if with_project:
        lease.project, end = rows.build(Project, row, end)
    if served_scoring:
        lease.served_scoring_id = row[end]
    return lease


def _db_uuid(value: uuid.UUID) -> object:
    """A UUID as this database stores it (SQLite: 32 hex digits)."""
    return Lease._meta.pk.get_db_prep_value(value, connection)


def _local_midnight() -> datetime:
    today = timezone.localdate()
    return timezone.make_aware(datetime.combine(today, time.min), timezone.get_current_timezone())


def _count_cached(key: str, count: Callable[[], dict[str, int]], *, large: int, seconds: int) -> dict[str, int]:
    """Return the counts, exact while small; once one reaches ``large``, reuse them for ``seconds``.

    Counting a million-item pool takes tens of milliseconds, too long for every next item, and
    a progress figure that large does not visibly move in a minute.
    """
    cached = cache.get(key)
    if cached is not None:
        return cached
    counts = count()
    if max(counts.values()) >= large:
        cache.set(key, counts, seconds)
    return counts


def queue_progress(project: Project, user: AbstractBaseUser) -> dict[str, Any]:
    """Pool size, labeled and done items, the user's labels today and the scoring being served."""
    # created_at in the key: a cache shared by two databases (a benchmark's, a test run's) never mixes projects.
    key = f"{project.pk}:{project.created_at.timestamp()}"
    q, item_table = rows.qn, rows.qn(Item._meta.db_table)

    def count_pool() -> dict[str, int]:
        return {"pool": rows.fetch_one(f"SELECT COUNT(*) FROM {item_table} WHERE {q('project_id')} = %s", [project.pk])[0]}

    def count_labeled() -> dict[str, int]:
        # Every done item is labeled, so one pass over the labeled items' partial index counts both,
        # reading columns of the index only, so that it can answer alone (an index-only scan).
        labeled, done = rows.fetch_one(
            f"SELECT COUNT(*), COUNT(*) FILTER (WHERE {q('queue_done')}) FROM {item_table}"
            f" WHERE {q('project_id')} = %s AND {q('label_count')} > 0",
            [project.pk],
        )
        return {"labeled": labeled, "done": done}

    pool = _count_cached(f"queue-pool:{key}", count_pool, large=POOL_CACHED_FROM, seconds=POOL_CACHE_SECONDS)["pool"]
    counts = _count_cached(
        f"queue-labeled:{key}", count_labeled, large=LABELED_CACHED_FROM, seconds=LABELED_CACHE_SECONDS
    )
    mine_today = rows.fetch_one(
        f"SELECT COUNT(*) FROM {q(Annotation._meta.db_table)} a INNER JOIN {item_table} i ON i.{q('id')} = a.{q('item_id')}"
        f" WHERE a.{q('annotator_id')} = %s AND a.{q('created_at')} >= %s AND i.{q('project_id')} = %s",
        [user.pk, connection.ops.adapt_datetimefield_value(_local_midnight()), project.pk],
    )[0]
    scoring = scoring_current(project.pk)
    return {
        "pool": pool,
        "labeled": counts["labeled"],
        "done": counts["done"],
        "mine_today": mine_today,
        "scoring": None if scoring is None else {
            "model_version": scoring.model_version,
            "finished_at": scoring.finished_at,
            "strategy": scoring.strategy,
        },
    }
