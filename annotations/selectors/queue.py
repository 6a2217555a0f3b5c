"""Reads of the labeling queue: an expert's leases, the scoring the queue serves from, and progress."""
import uuid
from collections.abc import Callable
from datetime import datetime, time
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from labelhub.api import NotFound

from ..models import Annotation, Item, Lease, Membership, Project, QueueScoring

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
) -> Lease:
    """Return the user's lease (with project, item and suggested label) while they may label there; else 404.

    Writes that need only the project pass ``related=("project",)``: fewer joined rows to build.
    """
    try:
        lease_uuid = lease_id if isinstance(lease_id, uuid.UUID) else uuid.UUID(str(lease_id))
    except ValueError:
        raise NotFound("Lease not found.") from None
    leases = Lease.objects.filter(pk=lease_uuid, user=user)
    if related:  # select_related() with no names would follow every relation
        leases = leases.select_related(*related)
    if not user.is_staff:
        # A removed member keeps their lease rows but may no longer use them.
        leases = leases.filter(Exists(Membership.objects.filter(project_id=OuterRef("project_id"), user=user)))
    lease = leases.first()
    if lease is None:
        raise NotFound("Lease not found.")
    return lease


def queue_scorings_complete(project_id: int) -> QuerySet[QueueScoring]:
    """The project's complete scorings, newest first: the first one is what the queue serves from."""
    return QueueScoring.objects.filter(
        project_id=project_id, status=QueueScoring.Status.COMPLETE, finished_at__isnull=False
    ).order_by("-finished_at", "-pk")


def queue_scoring_current(project_id: int) -> QueueScoring | None:
    """The project's newest complete scoring, which the queue serves from, or None."""
    return queue_scorings_complete(project_id).first()


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
    pool = _count_cached(
        f"queue-pool:{key}",
        lambda: {"pool": Item.objects.filter(project=project).count()},
        large=POOL_CACHED_FROM, seconds=POOL_CACHE_SECONDS,
    )["pool"]
    # Every done item is labeled, so one pass over the labeled items' partial index counts both.
    counts = _count_cached(
        f"queue-labeled:{key}",
        lambda: Item.objects.filter(project=project, label_count__gt=0).aggregate(
            # Columns of the index only, so that it can answer alone (an index-only scan).
            labeled=Count("*"), done=Count("queue_done", filter=Q(queue_done=True))
        ),
        large=LABELED_CACHED_FROM, seconds=LABELED_CACHE_SECONDS,
    )
    mine_today = Annotation.objects.filter(
        annotator=user, created_at__gte=_local_midnight(), item__project=project
    ).count()
    scoring = queue_scoring_current(project.pk)
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
