"""Freshness: from the label that trips the count trigger to the new model live and the pool rescored.

Digits (scikit-learn's load_digits rendered as the demo renders them) make the labeled set; the
pool is grown to 100,000 items by jittering their feature rows. One Celery worker process runs
the whole chain: count trigger → train → evaluate → gate → swap → pool scoring.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import bench_environment, emit, start_worker, stop  # noqa: E402

LABELED = 300  # the count trigger fires at the 300th label


def build_project(pool_size: int):
    import hashlib

    import numpy as np
    from django.contrib.auth import get_user_model
    from sklearn.datasets import load_digits

    from annotations.management.commands.demo import _digit_png
    from annotations.models import Annotation, Item, Label, Membership, Project
    from learner.ml.featurize import ImageFeaturizer, pack
    from learner.services.features import _store

    digits = load_digits()
    featurizer = ImageFeaturizer()
    base = featurizer.transform([io.BytesIO(_digit_png(p)) for p in digits.images]).astype(np.float32)
    rng = np.random.default_rng(0)
    source = np.arange(pool_size) % len(base)
    matrix = np.clip(base[source] + rng.normal(0, 0.02, size=(pool_size, base.shape[1])).astype(np.float32), 0, 1)

    user = get_user_model().objects.create_user("expert", password="bench-pass-123")
    project = Project.objects.create(name="Digits", slug="digits", kind="image", retrain_every_n_labels=LABELED)
    labels = Label.objects.bulk_create([Label(project=project, name=str(d), shortcut=str(d), order=d) for d in range(10)])
    Membership.objects.create(project=project, user=user, role="annotator")
    items = Item.objects.bulk_create(
        [Item(project=project, external_id=f"d{i}", content_hash=hashlib.sha256(b"d%d" % i).hexdigest())
         for i in range(pool_size)],
        batch_size=5000,
    )
    ids = [item.pk for item in items]
    packed = pack(matrix)
    for start in range(0, pool_size, 20_000):
        _store([(ids[i], project.pk, featurizer.space, *packed[i]) for i in range(start, min(start + 20_000, pool_size))])
    # LABELED - 1 labels already given (every fifth drawn as audit), the last one comes through the queue.
    labeled = rng.choice(pool_size, LABELED - 1, replace=False)
    Annotation.objects.bulk_create(
        [Annotation(item_id=ids[i], annotator=user, label=labels[int(digits.target[source[i]])], is_audit=k % 5 == 0)
         for k, i in enumerate(labeled)]
    )
    Item.objects.filter(pk__in=[ids[i] for i in labeled]).update(label_count=1, queue_done=True)
    return project, user, labels, digits.target, source, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a 10,000-item pool")
    args = parser.parse_args()
    pool_size = 10_000 if args.quick else 100_000

    with bench_environment("freshness") as env:
        import django

        django.setup()
        from annotations.models import QueueScoring
        from annotations.services import annotation_submit, queue_next
        from learner.models import LiveModel, TrainingRun

        project, user, labels, target, source, ids = build_project(pool_size)
        index_of = {pk: i for i, pk in enumerate(ids)}
        worker = start_worker(env, concurrency=1)
        try:
            lease = queue_next(project=project, user=user)
            truth = labels[int(target[source[index_of[lease.item_id]]])]
            started = time.perf_counter()
            annotation_submit(lease_id=lease.pk, user=user, label_id=truth.pk)
            deadline = time.time() + 300
            scoring = None
            while time.time() < deadline:
                live = LiveModel.objects.filter(project=project, version__isnull=False).select_related("version").first()
                if live is not None:
                    scoring = QueueScoring.objects.filter(
                        project=project, model_version=live.version.number, status="complete"
                    ).first()
                    if scoring is not None:
                        break
                run = TrainingRun.objects.filter(project=project).first()
                if run is not None and run.status in ("failed", "kept"):
                    raise SystemExit(f"the run did not promote: {run.status} {run.decision or run.error}")
                time.sleep(0.05)
            total = time.perf_counter() - started
            if scoring is None:
                raise SystemExit("no rescored pool within 300 s")
        finally:
            stop(worker)
        run = TrainingRun.objects.get(project=project)
        timings = run.timings
        emit("freshness", {
            "pool_size": pool_size,
            "train_s": round(timings["train"], 2),
            "evaluate_s": round(timings["evaluate"], 2),
            "swap_s": round(timings["swap"], 3),
            "rescore_s": round((scoring.finished_at - scoring.started_at).total_seconds(), 2),
            "total_s": round(total, 2),
            "audit_accuracy": round(run.model_version.metrics["accuracy"], 3),
        })


if __name__ == "__main__":
    main()
