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
import http.client
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
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


# Clients


@dataclass
class Tally:
    """What the clients measured, in milliseconds."""

    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    cycles: int = 0
    empty: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Client:
    """One expert's keep-alive HTTP connection, authenticated by token."""

    def __init__(self, port: int, token: str, project_id: int, fallback_label: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.project_id = project_id
        self.fallback_label = fallback_label

    def post(self, path: str, body: dict) -> tuple[int, bytes, float]:
        started = time.perf_counter()
        self.connection.request("POST", path, body=json.dumps(body), headers=self.headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, data, (time.perf_counter() - started) * 1000

    def cycle(self, tally: Tally) -> None:
        """Lease the next item and label it (with the model's suggestion, as a hurried expert might)."""
        status, data, next_ms = self.post(f"/api/projects/{self.project_id}/queue/next", {})
        if status == 204:
            with tally.lock:
                tally.next_ms.append(next_ms)
                tally.empty += 1
            return
        if status != 200:
            raise RuntimeError(f"queue/next answered {status}: {data[:300]!r}")
        served = json.loads(data)
        label_id = (served.get("suggestion") or {}).get("label_id") or self.fallback_label
        status, data, submit_ms = self.post(
            f"/api/leases/{served['lease']['id']}/submit", {"label_id": label_id, "time_spent_ms": 1000}
        )
        if status not in (200, 201):
            raise RuntimeError(f"submit answered {status}: {data[:300]!r}")
        with tally.lock:
            tally.next_ms.append(next_ms)
            tally.submit_ms.append(submit_ms)
            tally.cycles += 1


def clients_run(clients: list[Client], seconds: float, per_client_interval: float | None) -> Tally:
    """Run every client for the given time: back to back, or one cycle per interval each (staggered)."""
    tally = Tally()
    for client in clients:
        client.connection.close()  # a fresh connection each run: gunicorn drops idle keep-alive ones
    stop_at = time.perf_counter() + seconds

    def loop(index: int, client: Client) -> None:
        next_start = time.perf_counter() + (per_client_interval or 0) * index / len(clients)
        while True:
            if per_client_interval is not None:
                pause = next_start - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                next_start += per_client_interval
            if time.perf_counter() >= stop_at:
                return
            try:
                client.cycle(tally)
            except (OSError, RuntimeError, http.client.HTTPException) as exc:
                with tally.lock:
                    tally.errors.append(str(exc))
                client.connection.close()

    threads = [threading.Thread(target=loop, args=(i, c), daemon=True) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


def duplicates(project_id: int, overlap: int) -> int:
    """Items served to two clients at once: labeled beyond the overlap, or leased to two over overlapping spans."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH spans AS (
                SELECT l.item_id, l.user_id, l.created_at AS start_at,
                       COALESCE(a.created_at, LEAST(l.expires_at, now())) AS end_at
                FROM annotations_lease l LEFT JOIN annotations_annotation a ON a.lease_id = l.id
                WHERE l.project_id = %(project)s AND l.status IN ('active', 'submitted')
            ),
            overlapping AS (
                SELECT DISTINCT s1.item_id FROM spans s1 JOIN spans s2
                  ON s1.item_id = s2.item_id AND s1.user_id < s2.user_id
                 AND s1.start_at < s2.end_at AND s2.start_at < s1.end_at
            ),
            over_labeled AS (
                SELECT a.item_id FROM annotations_annotation a JOIN annotations_item i ON i.id = a.item_id
                WHERE i.project_id = %(project)s AND a.source = 'queue'
                GROUP BY a.item_id HAVING COUNT(*) > %(overlap)s
            )
            SELECT COUNT(*) FROM (SELECT item_id FROM overlapping UNION SELECT item_id FROM over_labeled) d
            """,
            {"project": project_id, "overlap": overlap},
        )
        return cursor.fetchone()[0]


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
        from labelhub.celery import TaskName
        from labelhub.celery import app as celery_app  # the broker the swap sends its task to

        project, labels, tokens = project_create(CLIENTS)
        built = time.perf_counter()
        ids, X = pool_create(project.pk, pool_size)
        print(f"pool of {pool_size:,} built in {time.perf_counter() - built:.1f} s", file=sys.stderr, flush=True)
        labeled, y_all = labels_create(ids, X, labels)
        vacuum(features=True)

        figures: dict = {"pool_size": pool_size, "clients": CLIENTS}
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
            for run in range(args.scorings):
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
        vacuum()
        if args.scoring_only:
            emit("queue_latency", figures, save=False)
            return

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
        figures.update({
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
        })
    emit("queue_latency", figures)


if __name__ == "__main__":
    main()
