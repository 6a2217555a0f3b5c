"""Compute items' features and store them, one compact row per item."""
import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np
from django.db import IntegrityError, connection, transaction

from annotations.models import Item
from annotations.imports.services import import_job_features_progress
from learner import selectors
from learner.ml.featurize import FeaturizeError, ImageFeaturizer, TabularFeaturizer, TextFeaturizer, pack
from learner.models import FeatureVector
from learner.services.scoring import score_pool_after_features
from learner.services.triggers import drift_check_after_features

logger = logging.getLogger(__name__)

# The Item field each featurizer reads.
SOURCE_FIELD = {TextFeaturizer: "text", ImageFeaturizer: "image", TabularFeaturizer: "values"}
STORE_FIELDS = ("item_id", "project_id", "space", "values", "indices")
COPY_COLUMNS = [FeatureVector._meta.get_field(name).column for name in STORE_FIELDS]


def features_compute_chunk(project_id: int, item_ids: Sequence[int]) -> int:
    """Compute and store features of those items that have none; return how many items that was.

    Items that already have features are skipped, so running a chunk again stores and reports
    nothing. An image that cannot be read is logged and left without features; it still counts
    as handled. Each handled item counts towards its own import job's progress, whichever task
    planned the chunk.
    """
    if not item_ids:
        return 0
    featurizer = selectors.project_featurizer(project_id)
    wanted = set(item_ids)
    # A planned chunk is a slice of sorted ids: a range scan and a set test fetch it about three
    # times faster than IN with 5,000 parameters.
    candidates = (
        selectors.items_lacking_features(project_id)
        .filter(pk__range=(min(wanted), max(wanted)))
        .order_by("pk")
        .values_list("pk", SOURCE_FIELD[type(featurizer)], "import_job_id", "import_job__features_status")
    )
    pending = [row for row in candidates if row[0] in wanted]
    if not pending:
        return 0
    if isinstance(featurizer, ImageFeaturizer):
        stored_ids, matrix = _image_rows(featurizer, [(pk, raw) for pk, raw, _, _ in pending])
    else:
        stored_ids, matrix = [row[0] for row in pending], featurizer.transform([row[1] for row in pending])
    # A job already done is not credited again for an image retried outside it.
    progress = Counter(job for _, _, job, status in pending if status in selectors.FEATURES_PENDING)
    rows = [
        (pk, project_id, featurizer.space, values, indices)
        for pk, (values, indices) in zip(stored_ids, pack(matrix), strict=True)
    ]
    # Rows and progress commit together: a worker lost in between leaves neither, so the
    # redelivered chunk counts its items exactly once.
    with transaction.atomic():
        _store(rows)
        for job_id, done in sorted(progress.items()):  # a fixed order, so concurrent chunks cannot deadlock
            import_job_features_progress(job_id, done=done)
        # Those updates hold the jobs' rows locked until commit, so the chunk that completes a job sees it complete.
        completed = selectors.import_jobs_features_counted(sorted(progress))
        for job_id in completed:
            import_job_features_progress(job_id, status="done")
    if completed:
        # After commit, so that the scoring it asks for sees every feature row of these imports.
        score_pool_after_features(project_id, completed)
        # New items may not look like those the live model was trained beside: check now, not at the next hour.
        drift_check_after_features(project_id)
    return len(pending)


def features_plan_start(project_id: int, job_id: int | None) -> list[list[int]]:
    """Plan the chunks of items lacking features and mark the import job running, or done if none are left."""
    chunks = selectors.features_plan(project_id, job_id)
    if job_id is not None:
        import_job_features_progress(job_id, status="running" if chunks else "done")
        if not chunks:
            score_pool_after_features(project_id, [job_id])
    return chunks


def _store(rows: list[tuple[int, int, str, bytes, bytes | None]]) -> None:
    """Insert FeatureVector rows given as (item_id, project_id, space, values, indices) tuples."""
    if connection.vendor == "postgresql":
        # COPY stores about five times more rows per second than a multi-row INSERT.
        table, columns = FeatureVector._meta.db_table, ", ".join(f'"{c}"' for c in COPY_COLUMNS)
        try:
            with transaction.atomic(), connection.wrap_database_errors, connection.cursor() as cursor:
                with cursor.cursor.copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
                    for row in rows:
                        copy.write_row(row)
            return
        except IntegrityError:
            pass  # some of these items were stored meanwhile by a concurrent run of the same chunk
    FeatureVector.objects.bulk_create(
        [FeatureVector(**dict(zip(STORE_FIELDS, row))) for row in rows], batch_size=2000, ignore_conflicts=True
    )


def _image_rows(featurizer: ImageFeaturizer, pending: list[tuple[int, str]]) -> tuple[list[int], np.ndarray]:
    storage = Item._meta.get_field("image").storage
    stored_ids, rows = [], []
    for pk, name in pending:
        try:
            with storage.open(name, "rb") as file:
                rows.append(featurizer.row(file))
        except (OSError, FeaturizeError) as exc:
            # Import validated every image, so this one was lost or damaged since; one bad file
            # must not cost the other items of the chunk their features.
            logger.warning("Item %s gets no features: image %r cannot be read (%s)", pk, name, exc)
            continue
        stored_ids.append(pk)
    return stored_ids, np.array(rows, dtype=np.float32).reshape(len(rows), featurizer.n_features)

