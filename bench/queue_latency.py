"""Queue latency: pool scoring on 1,000,000 items by Celery workers, then the queue's REST API under 16 experts.

The pool is tabular (64 features), written straight into the tables with binary COPY, with
its features. Scoring is timed from the swap that asks for it (model_version_promote sends
learner.score_pool after commit) until its QueueScoring row is complete: first with one
worker process and with two (each of concurrency 1, BLAS held to one thread), three scorings
each (``--scorings``), one and two workers taking turns; the figures are the medians, the runs
are printed too. Then gunicorn
serves 16 closed-loop clients with no think time, each leasing the next item and labeling it;
then the same clients paced at 50 cycles/s in total. Duplicates are counted from the database
afterwards: items labeled more often than the overlap allows, and items leased to two clients
over overlapping spans of time. ``--scoring-only`` stops after the scoring figures.
"""
from __future__ import annotations

import argparse
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    bench_environment,
    emit,
    free_port,
    gunicorn_start,
    start_worker,
    stop,
)
from bench._queue_clients import Client, clients_run, duplicates, percentile  # noqa: E402

N_FEATURES = 64
N_CLASSES = 3
N_LABELED = 300
CLIENTS = 16
PACED_CYCLES_PER_S = 50.0
PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"
COPY_BATCH = 50_000


# Building the pool


def _json_rows(X: np.ndarray) -> np.ndarray:
    """Each row of X (|x| < 10, three decimals) as a fixed-width JSON array of ASCII bytes, built with numpy."""
    k = np.rint(X.astype(np.float64) * 1000).astype(np.int64)
    a = np.abs(k)
    # One value: sign (a space or '-'), digit, '.', three digits, then ',' (the last one becomes ']').
    chars = np.empty(X.shape + (7,), dtype=np.uint8)
    chars[..., 0] = np.where(k < 0, ord("-"), ord(" "))
    chars[..., 1] = ord("0") + a // 1000
    chars[..., 2] = ord(".")
    chars[..., 3] = ord("0") + (a // 100) % 10
    chars[..., 4] = ord("0") + (a // 10) % 10
    chars[..., 5] = ord("0") + a % 10
    chars[..., 6] = ord(",")
    body = chars.reshape(X.shape[0], -1)
    body[:, -1] = ord("]")
    return np.concatenate([np.full((X.shape[0], 1), ord("["), dtype=np.uint8), body], axis=1)


def _copy(cursor, statement: str, rows: np.ndarray) -> None:
    for start_row in range(0, len(rows), COPY_BATCH):
        with cursor.copy(statement) as copy:
            copy.write(COPY_HEADER + rows[start_row:start_row + COPY_BATCH].tobytes() + COPY_TRAILER)


def pool_create(project_id: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write n items and their features with binary COPY; return their ids and feature matrix."""
    from django.db import connection

    rng = np.random.default_rng(seed)
    X = np.clip(np.round(rng.normal(size=(n, N_FEATURES)), 3), -9.999, 9.999).astype(np.float32)
    json_rows = _json_rows(X)
    width = json_rows.shape[1]
    created = int((datetime.now(timezone.utc) - PG_EPOCH).total_seconds() * 1_000_000)
    item_dtype = np.dtype([
        ("count", ">i2"),
        ("project_len", ">i4"), ("project", ">i8"),
        ("external_len", ">i4"), ("external", "S8"),
        ("text_len", ">i4"), ("image_len", ">i4"), ("thumbnail_len", ">i4"),
        ("values_len", ">i4"), ("values_version", "u1"), ("values", "u1", (width,)),
        ("metadata_len", ">i4"), ("metadata", "S3"),
        ("hash_len", ">i4"), ("hash", "S64"),
        ("created_len", ">i4"), ("created", ">i8"),
        ("label_count_len", ">i4"), ("label_count", ">i4"),
        ("queue_done_len", ">i4"), ("queue_done", "u1"),
        ("random_key_len", ">i4"), ("random_key", ">f8"),
    ])
    items = np.zeros(n, dtype=item_dtype)
    items["count"] = 12
    items["project_len"], items["project"] = 8, project_id
    items["external_len"], items["external"] = 8, np.char.mod("p%07d", np.arange(n)).astype("S8")
    items["values_len"], items["values_version"], items["values"] = 1 + width, 1, json_rows
    items["metadata_len"], items["metadata"] = 3, b"\x01{}"
    items["hash_len"], items["hash"] = 64, np.char.mod("%064x", np.arange(n)).astype("S64")
    items["created_len"], items["created"] = 8, created
    items["label_count_len"] = 4
    items["queue_done_len"] = 1
    items["random_key_len"], items["random_key"] = 8, rng.random(n)
    with connection.cursor() as cursor:
        _copy(
            cursor.cursor,
            'COPY annotations_item (project_id, external_id, text, image, thumbnail, "values", metadata, '
            "content_hash, created_at, label_count, queue_done, random_key) FROM STDIN (FORMAT BINARY)",
            items,
        )
        del items
        cursor.execute("SELECT id FROM annotations_item WHERE project_id = %s ORDER BY external_id", [project_id])
        ids = np.array([row[0] for row in cursor.fetchall()], dtype=np.int64)
        space = f"tabular-v1:{N_FEATURES}".encode()
        feature_dtype = np.dtype([
            ("count", ">i2"), ("item_len", ">i4"), ("item", ">i8"), ("project_len", ">i4"), ("project", ">i8"),
            ("space_len", ">i4"), ("space", f"S{len(space)}"), ("values_len", ">i4"), ("values", f"V{N_FEATURES * 4}"),
        ])
        features = np.zeros(n, dtype=feature_dtype)
        features["count"] = 4
        features["item_len"], features["item"] = 8, ids
        features["project_len"], features["project"] = 8, project_id
        features["space_len"], features["space"] = len(space), space
        features["values_len"] = N_FEATURES * 4
        features["values"] = np.ascontiguousarray(X).view(f"V{N_FEATURES * 4}").ravel()
        _copy(
            cursor.cursor,
            "COPY learner_featurevector (item_id, project_id, space, \"values\") FROM STDIN (FORMAT BINARY)",
            features,
        )
        cursor.execute("ANALYZE annotations_item")
        cursor.execute("ANALYZE learner_featurevector")
    return ids, X


def project_create(n_clients: int):
    """A tabular project with three labels, a labeling account per client, and a token each."""
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    from annotations.models import Label, Membership, Project

    project = Project.objects.create(
        name="Bench queue", slug="bench-queue", kind=Project.Kind.TABULAR, query_strategy=Project.Strategy.MARGIN,
        feature_names=[f"f{i}" for i in range(N_FEATURES)],
    )
    labels = Label.objects.bulk_create(
        [Label(project=project, name=f"class_{i}", shortcut=str(i + 1), order=i) for i in range(N_CLASSES)]
    )
    users = [get_user_model().objects.create_user(f"expert{i:02d}", password="bench-pass-123") for i in range(n_clients)]
    Membership.objects.bulk_create([Membership(project=project, user=user) for user in users])
    tokens = [AuthToken.objects.create(user=user)[1] for user in users]
    return project, labels, tokens


def labels_create(ids: np.ndarray, X: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray]:
    """Label a few hundred random items by a linear rule (as imported labels); return their rows and every row's class."""
    from django.contrib.auth import get_user_model

    from annotations.models import Annotation, Item

    rng = np.random.default_rng(1)
    y_all = np.argmax(X @ rng.normal(size=(N_FEATURES, N_CLASSES)), axis=1)
    labeled = rng.choice(len(ids), size=N_LABELED, replace=False)
    curator = get_user_model().objects.create_user("curator", password="bench-pass-123")
    Annotation.objects.bulk_create(
        Annotation(item_id=int(ids[i]), annotator=curator, label=labels[y_all[i]], source=Annotation.Source.IMPORT)
        for i in labeled
    )
    Item.objects.filter(pk__in=ids[labeled].tolist()).update(label_count=1, queue_done=True)
    return labeled, y_all


def model_create(project, labels, X: np.ndarray, y: np.ndarray):
    """Fit the linear model on the labeled rows and store it as a candidate version."""
    from learner.ml.training import fit, hyperparameters
    from learner.services.models import model_version_create

    pipeline = fit("tabular", X, np.array([labels[c].pk for c in y]))
    return model_version_create(
        project=project, pipeline=pipeline, classes=[label.pk for label in labels],
        feature_space=f"tabular-v1:{N_FEATURES}", algorithm="LogisticRegression",
        hyperparameters=hyperparameters(pipeline), label_snapshot_hash="bench", labels_used=len(y),
    )


def timed_swap(project_id: int, version) -> tuple[float, int]:
    """Make the version live (the swap asks for a scoring after commit); time it until the scoring completes."""
    from learner.services.models import model_version_promote

    started = time.perf_counter()
    model_version_promote(version, reason="bench")
    return scoring_wait(project_id, version.number, started)


def scoring_wait(project_id: int, model_version: int, started: float, timeout: float = 1800) -> tuple[float, int]:
    """Wait until the scoring by that version completes; return seconds since ``started`` and items scored."""
    from annotations.models import QueueScoring

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = (
            QueueScoring.objects.filter(project_id=project_id, model_version=model_version)
            .order_by("-pk").values("status", "items_scored", "error").first()
        )
        if row and row["status"] == QueueScoring.Status.COMPLETE:
            return time.perf_counter() - started, row["items_scored"]
        if row and row["status"] == QueueScoring.Status.FAILED:
            raise SystemExit(f"scoring by v{model_version} failed: {row['error']}")
        time.sleep(0.01)  # a scoring of the 1M pool takes 2 to 4 s: timed to within 10 ms
    raise SystemExit(f"scoring by v{model_version} did not complete in {timeout:.0f} s")


def scoring_timed(project, labels, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Time one scoring by the consuming workers, after a swap to a new version; items/s and the index wait.

    After it, the index over the whole pool is waited for and the score tables vacuumed, so that
    no run's background work spills into the next.
    """
    seconds, scored = timed_swap(project.pk, model_create(project, labels, X, y))
    index_after = whole_index_wait(project.pk)
    vacuum()
    return scored / seconds, index_after


def scoring_consumer(celery_app, worker: str, on: bool) -> None:
    """Make a running worker take scoring tasks or stop taking them (Celery's remote control); wait for its answer."""
    method = celery_app.control.add_consumer if on else celery_app.control.cancel_consumer
    if not method("scoring", destination=[worker], reply=True, timeout=10):
        raise SystemExit(f"worker {worker} did not answer the remote control")


def whole_index_wait(project_id: int, timeout: float = 300) -> float:
    """Wait until the served scoring's index covers its whole pool (built after it is served); return seconds waited."""
    from annotations.selectors import scoring_current

    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        served = scoring_current(project_id)
        if served is None or served.head_floor is None:
            return time.perf_counter() - started
        time.sleep(0.05)
    raise SystemExit(f"the served scoring's whole pool was not indexed in {timeout:.0f} s")


def vacuum(*, features: bool = False) -> None:
    """Settle the tables between timed runs, so that autovacuum does not start inside one.

    ``features``: also the freshly written features (a million inserted rows would otherwise set
    off autovacuum on them during the first timed scoring), then a checkpoint: that vacuum writes
    over a gigabyte of WAL, whose checkpoints would otherwise write and sync during the timed
    scorings. In a real pool both happened long before a rescore.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        if features:
            cursor.execute("VACUUM ANALYZE learner_featurevector")
            cursor.execute("VACUUM ANALYZE annotations_item")
            cursor.execute("CHECKPOINT")
        cursor.execute("VACUUM ANALYZE annotations_itemscore")
        cursor.execute("VACUUM ANALYZE annotations_queuescoring")


def scoring_figures(env: dict, project, labels, X: np.ndarray, y_all: np.ndarray, labeled, scorings: int) -> dict:
    """The seeding, then ``scorings`` timed scorings by one worker and by two, taking turns."""
    from labelhub.celery import TaskName
    from labelhub.celery import app as celery_app  # the broker the swap sends its task to

    figures: dict = {}
    # Two workers throughout; the second stops taking scoring tasks for the one-worker runs.
    # The runs alternate (one, two; two, one; ...) so that both figures share the machine's
    # moods, which on a shared virtual machine change from minute to minute.
    workers = [start_worker(env, concurrency=1, queues="scoring", name=f"score{n}") for n in "ab"]
    second = f"scoreb@{socket.gethostname()}"
    try:
        scoring_consumer(celery_app, second, False)
        started = time.perf_counter()
        celery_app.send_task(TaskName.SCORE_POOL, args=[project.pk])
        seconds, scored = scoring_wait(project.pk, 0, started)
        figures["seeding_items_per_s"] = round(scored / seconds)
        whole_index_wait(project.pk)
        vacuum()
        # One untimed scoring by both, so that the second worker too is past its first scoring.
        scoring_consumer(celery_app, second, True)
        scoring_timed(project, labels, X[labeled], y_all[labeled])
        rates: dict[int, list[float]] = {1: [], 2: []}
        index_after, consuming = [], 2
        for run in range(scorings):
            for count in (1, 2) if run % 2 == 0 else (2, 1):
                if count != consuming:
                    scoring_consumer(celery_app, second, count == 2)
                    consuming = count
                rate, after = scoring_timed(project, labels, X[labeled], y_all[labeled])
                rates[count].append(rate)
                index_after.append(after)
    finally:
        for proc in workers:
            stop(proc)
    one, two = float(np.median(rates[1])), float(np.median(rates[2]))
    figures["scoring_items_per_s"] = round(one)
    figures["scoring_items_per_s_runs"] = [round(rate) for rate in rates[1]]
    # Served once its head is indexed; the index over the whole pool follows in the background.
    figures["scoring_whole_index_after_s"] = round(float(np.median(index_after)), 2)
    figures["scoring_items_per_s_2_workers"] = round(two)
    figures["scoring_items_per_s_2_workers_runs"] = [round(rate) for rate in rates[2]]
    figures["scoring_speedup_2_workers"] = round(two / one, 2)
    return figures


def client_figures(env: dict, project, labels, tokens: list[str], closed_s: float, paced_s: float) -> dict:
    """gunicorn serving the clients back to back, then paced; the duplicates counted afterwards."""
    port = free_port()
    web = gunicorn_start(env, port)
    try:
        clients = [Client(port, token, project.pk, labels[0].pk) for token in tokens]
        clients_run(clients, 2.0, None)  # warm every gunicorn thread's connection
        closed = clients_run(clients, closed_s, None)
        paced = clients_run(clients, paced_s, CLIENTS / PACED_CYCLES_PER_S)
    finally:
        stop(web)
    errors = closed.errors + paced.errors
    if errors:
        print(f"{len(errors)} client errors, e.g. {errors[:3]}", file=sys.stderr)
    return {
        "cycles_per_s": round(closed.cycles / closed_s, 1),
        "next_p50_ms": percentile(closed.next_ms, 50),
        "next_p99_ms": percentile(closed.next_ms, 99),
        "submit_p50_ms": percentile(closed.submit_ms, 50),
        "submit_p99_ms": percentile(closed.submit_ms, 99),
        "paced_cycles_per_s": round(paced.cycles / paced_s, 1),
        "paced_next_p99_ms": percentile(paced.next_ms, 99),
        "paced_submit_p99_ms": percentile(paced.submit_ms, 99),
        "duplicates": duplicates(project.pk, project.overlap),
        "client_errors": len(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a 50,000-item pool and short client runs")
    parser.add_argument("--pool", type=int, default=None)
    parser.add_argument(
        "--scoring-only", action="store_true",
        help="only the scoring figures (no web clients); printed, not written to bench/results",
    )
    parser.add_argument(
        "--scorings", type=int, default=3,
        help="timed scorings per worker count, taking turns; the figures are their medians (default 3)",
    )
    args = parser.parse_args()
    pool_size = args.pool or (50_000 if args.quick else 1_000_000)
    closed_s, paced_s = (8.0, 8.0) if args.quick else (45.0, 30.0)

    with bench_environment("queue") as env:
        import django

        django.setup()
        project, labels, tokens = project_create(CLIENTS)
        built = time.perf_counter()
        ids, X = pool_create(project.pk, pool_size)
        print(f"pool of {pool_size:,} built in {time.perf_counter() - built:.1f} s", file=sys.stderr, flush=True)
        labeled, y_all = labels_create(ids, X, labels)
        vacuum(features=True)

        figures: dict = {"pool_size": pool_size, "clients": CLIENTS}
        figures.update(scoring_figures(env, project, labels, X, y_all, labeled, args.scorings))
        vacuum()
        if args.scoring_only:
            emit("queue_latency", figures, save=False)
            return
        figures.update(client_figures(env, project, labels, tokens, closed_s, paced_s))
    emit("queue_latency", figures)

if __name__ == "__main__":
    main()
