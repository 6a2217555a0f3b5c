"""Items browser latency: a reviewer's GET of /projects/{id}/items through gunicorn on a 1,000,000-item pool, per filter and sort.

The pool is queue_latency's (tabular, 64 features, written with binary COPY), with metadata on every
item (source: one of four values, batch: 0-99). 20,000 items are labeled by two of four experts
each (one in ten disagreeing, one in fifty audit), 200 of them are gold and 100 resolved by a
reviewer; then a model goes live and one Celery worker scores the rest of the pool (the browser's
live predictions), and the whole-pool index is waited for. One logged-in reviewer then asks for
the items page under each filter and sort ``--requests`` times in turn (closed loop, one client);
every answer is read to its end and must be a 200. Figures: p95 and p99 over every request, each
case's p50/p95/max, and the case with the highest p95. ``--quick``: 50,000 items, 2,000 labeled.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import bench_environment, emit, free_port, gunicorn_start, start_worker, stop  # noqa: E402
from bench._queue_clients import percentile  # noqa: E402
from bench.queue_latency import model_create, pool_create, project_create, timed_swap, whole_index_wait  # noqa: E402

EXPERTS = 4
PASSWORD = "bench-pass-123"


def labels_create(project, labels, users, ids: np.ndarray, X: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Label n random items twice each by two of the experts; return the labeled rows and every row's class."""
    from django.db import connection

    from annotations.models import Annotation, Item

    rng = np.random.default_rng(2)
    y_all = np.argmax(X @ rng.normal(size=(X.shape[1], len(labels))), axis=1)
    rows = rng.choice(len(ids), size=n, replace=False)
    annotations = []
    for k, row in enumerate(rows):
        first, second = rng.choice(len(users), size=2, replace=False)
        other = (y_all[row] + 1) % len(labels) if k % 10 == 0 else y_all[row]
        annotations.append(Annotation(item_id=int(ids[row]), annotator=users[first], label=labels[y_all[row]],
                                      source=Annotation.Source.IMPORT, is_audit=k % 50 == 0))
        annotations.append(Annotation(item_id=int(ids[row]), annotator=users[second], label=labels[other],
                                      source=Annotation.Source.IMPORT))
    Annotation.objects.bulk_create(annotations, batch_size=5000)
    labeled = ids[rows].tolist()
    Item.objects.filter(pk__in=labeled).update(label_count=2, queue_done=True)
    Item.objects.filter(pk__in=labeled[:200]).update(gold_label=labels[0])
    Item.objects.filter(pk__in=labeled[200:300]).update(resolved_label=labels[1], resolved_by=users[0])
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE annotations_item SET metadata = jsonb_build_object("
            "'source', (ARRAY['web', 'mail', 'phone', 'shop'])[1 + id %% 4], 'batch', id %% 100)"
            " WHERE project_id = %s", [project.pk],
        )
        cursor.execute("VACUUM ANALYZE annotations_item")
        cursor.execute("VACUUM ANALYZE annotations_annotation")
    return rows, y_all


def cases(labels, users, external_id: str) -> dict[str, str]:
    """Each filter and sort the page offers, as the query string a reviewer's browser sends."""
    label, user = labels[1].pk, users[2].pk
    return {
        "newest": "", "oldest": "sort=oldest", "page_100": "page=100",
        "status_unlabeled": "status=unlabeled", "status_labeled": "status=labeled", "status_done": "status=done",
        "status_audit": "status=audit", "status_gold": "status=gold", "status_review": "status=review",
        "status_disagreement": "status=disagreement", "status_resolved": "status=resolved",
        "final_label": f"label={label}", "annotator": f"annotator={user}", "live_prediction": f"prediction={label}",
        "confidence_range": "conf_min=0.4&conf_max=0.6", "search_external_id": f"q={external_id}",
        "search_substring": f"q={external_id[:6]}", "search_absent": "q=no-such-thing",
        "metadata": "meta=source%3Dweb", "metadata_two": "meta=source%3Dmail&meta=batch%3D7",
        "sort_uncertainty": "sort=uncertainty", "sort_confidence": "sort=confidence",
        "sort_confidence_desc": "sort=-confidence",
        "combined": f"status=unlabeled&prediction={label}&meta=source%3Dweb&sort=uncertainty",
    }


def log_in(base: str, username: str):
    import requests

    session = requests.Session()
    page = session.get(f"{base}/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(f"{base}/accounts/login/", data={
        "csrfmiddlewaretoken": token, "username": username, "password": PASSWORD,
    }, headers={"Referer": f"{base}/accounts/login/"}, allow_redirects=False)
    if answer.status_code != 302:
        raise SystemExit(f"log-in failed: {answer.status_code}")
    return session


def measure(session, url: str, queries: dict[str, str], n: int) -> dict[str, list[float]]:
    """Each case n times, taking turns; milliseconds per request (to the last byte of the answer)."""
    times: dict[str, list[float]] = {name: [] for name in queries}
    for name, query in queries.items():  # one untimed round: connections and caches as in use
        session.get(f"{url}?{query}")
    for _ in range(n):
        for name, query in queries.items():
            started = time.perf_counter()
            answer = session.get(f"{url}?{query}")
            body = answer.content
            times[name].append((time.perf_counter() - started) * 1000)
            if answer.status_code != 200 or b"items-table" not in body:
                raise SystemExit(f"{name}: {answer.status_code} {body[:300]!r}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a 50,000-item pool, 2,000 labeled")
    parser.add_argument("--requests", type=int, default=None, help="requests per case (default 20; 5 with --quick)")
    args = parser.parse_args()
    pool_size, labeled_n = (50_000, 2_000) if args.quick else (1_000_000, 20_000)
    n = args.requests or (5 if args.quick else 20)

    with bench_environment("browse") as env:
        import django

        django.setup()
        from django.contrib.auth import get_user_model

        from annotations.models import Membership

        project, labels, _tokens = project_create(EXPERTS)
        project.overlap = 2
        project.save(update_fields=["overlap"])
        users = list(get_user_model().objects.filter(username__startswith="expert").order_by("username"))
        reviewer = get_user_model().objects.create_user("reviewer", password=PASSWORD)
        Membership.objects.create(project=project, user=reviewer, role=Membership.Role.REVIEWER)
        built = time.perf_counter()
        ids, X = pool_create(project.pk, pool_size)
        rows, y_all = labels_create(project, labels, users, ids, X, labeled_n)
        print(f"pool of {pool_size:,} built in {time.perf_counter() - built:.1f} s", file=sys.stderr, flush=True)
        worker = start_worker(env, concurrency=1)
        try:
            scoring_s, scored = timed_swap(project.pk, model_create(project, labels, X[rows], y_all[rows]))
            whole_index_wait(project.pk)
        finally:
            stop(worker)
        print(f"scored {scored:,} items in {scoring_s:.1f} s", file=sys.stderr, flush=True)
        port = free_port()
        web = gunicorn_start(env, port)
        try:
            base = f"http://127.0.0.1:{port}"
            session = log_in(base, "reviewer")
            queries = cases(labels, users, f"p{pool_size // 2:07d}")
            times = measure(session, f"{base}/projects/{project.pk}/items", queries, n)
        finally:
            stop(web)

    every = [t for values in times.values() for t in values]
    per_case = {
        name: {"p50_ms": round(percentile(v, 50), 1), "p95_ms": round(percentile(v, 95), 1),
               "max_ms": round(max(v), 1)}
        for name, v in times.items()
    }
    emit("browse_latency", {
        "pool_size": pool_size,
        "labeled_items": labeled_n,
        "requests_per_case": n,
        "p95_ms": round(percentile(every, 95), 1),
        "p99_ms": round(percentile(every, 99), 1),
        "slowest_filter": max(per_case, key=lambda name: per_case[name]["p95_ms"]),
        "per_filter": per_case,
    })


if __name__ == "__main__":
    main()
