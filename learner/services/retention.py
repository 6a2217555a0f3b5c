"""Model file retention: files no decision can need any more are removed; their versions' records stay.

A project that retrains after every few labels makes a version each time, and most are live for a
minute. Each version keeps its record for good (metrics, decision, lineage, the swaps that made it
live), but its model file only while someone may still load it. Kept, per project:

- the live version's file;
- the newest ``LABELHUB_MODEL_FILES_KEPT`` versions' files (candidates to compare, promote by hand
  or put in an A/B experiment);
- the files of the ``LABELHUB_MODEL_FILES_KEPT`` versions live most recently before the live one
  (what a rollback reaches for);
- the file of the version live at the end of each day on which the live model changed (a rollback
  to how the model stood on a given day);
- the files of versions a manager made live by hand (promoted anyway, or rolled back to), and of
  both versions of every running experiment.

Every other file is removed after each training run (``model_files_prune``). Its version says so on
the versions page and in the API, and it cannot be rolled back to, promoted, or tested in an
experiment: that needs a retrain.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from learner.models import Experiment, LiveModel, ModelVersion, SwapHistory
from learner.services.models import MANAGER_PROMOTED, storage_delete

logger = logging.getLogger(__name__)


def _kept(project_id: int, keep: int) -> set[int]:
    """Ids of the versions whose files stay (see the module's docstring)."""
    with_file = ModelVersion.objects.filter(project_id=project_id, artifact_removed_at__isnull=True)
    kept = set(with_file.order_by("-number").values_list("pk", flat=True)[:keep])
    live = LiveModel.objects.filter(project_id=project_id, version__isnull=False)
    kept.update(live.values_list("version_id", flat=True))
    running = Experiment.objects.filter(project_id=project_id, status=Experiment.Status.RUNNING)
    for champion, challenger in running.values_list("champion_id", "challenger_id"):
        kept.update((champion, challenger))
    # Swaps to versions that still have a file: once a file is removed, its swaps need not be read again.
    swaps = SwapHistory.objects.filter(project_id=project_id, to_version__artifact_removed_at__isnull=True)
    # Made live by hand: rolled back to, or promoted anyway (as SwapHistory.promoter words them).
    kept.update(swaps.filter(Q(trigger="rollback") | Q(reason__startswith=MANAGER_PROMOTED))
                .values_list("to_version_id", flat=True))
    recent: list[int] = []
    day_seen = set()
    newest_first = swaps.order_by("-created_at", "-pk").values_list("to_version_id", "created_at")
    for version_id, created_at in newest_first.iterator(chunk_size=2000):
        if len(recent) < keep + 1 and version_id not in recent:
            recent.append(version_id)  # the live one, then the ones live before it
        day = timezone.localdate(created_at)
        if day not in day_seen:
            day_seen.add(day)
            kept.add(version_id)  # newest first: the first swap seen of a day is its last
    kept.update(recent)
    return kept


def model_files_prune(project_id: int, keep: int | None = None) -> list[int]:
    """Remove the model files the project no longer keeps; return the numbers of the versions that lost theirs.

    Runs under the live pointer's row lock, as a swap does, so no version is made live while its
    file is being removed. The files themselves go once the removal is committed.
    """
    keep = settings.LABELHUB_MODEL_FILES_KEPT if keep is None else keep
    with transaction.atomic():
        list(LiveModel.objects.select_for_update().filter(project_id=project_id))
        kept = _kept(project_id, keep)
        doomed = list(
            ModelVersion.objects.filter(project_id=project_id, artifact_removed_at__isnull=True)
            .exclude(pk__in=kept).values_list("pk", "number", "artifact_name")
        )
        if not doomed:
            return []
        ModelVersion.objects.filter(pk__in=[pk for pk, _, _ in doomed]).update(artifact_removed_at=timezone.now())
        names = [name for _, _, name in doomed]
        transaction.on_commit(lambda: storage_delete(names))
    numbers = sorted(number for _, number, _ in doomed)
    logger.info("Project %s: removed the model files of %s versions (v%s to v%s)", project_id, len(numbers),
                numbers[0], numbers[-1])
    return numbers
