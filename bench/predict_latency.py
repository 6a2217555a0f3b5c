"""Predict latency: POST /api/projects/{id}/predict through gunicorn, one item at a time and in batches of 1,000.

A tabular project (64 features, 3 classes) with a logistic-regression model live. gunicorn,
started as queue_latency starts it (4 processes × 4 threads), serves one closed-loop client sending
single items (p50/p99 in ms),
then two closed-loop clients sending batches of 1,000 items (items per second over both). Every
prediction is logged (one insert statement per request), as in production. Request bodies are
encoded once up front so the client's own JSON work stays out of the figures.
"""
from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import bench_environment, emit, free_port, gunicorn_start, stop  # noqa: E402
from bench.queue_latency import percentile  # noqa: E402

N_FEATURES = 64
N_CLASSES = 3
BATCH = 1000
BATCH_CLIENTS = 2


def project_create():
    """A tabular project with a live logistic regression, and an API client of it with its token."""
    from annotations.models import Label, Project
    from annotations.services import api_client_create
    from learner.ml.training import fit
    from learner.services.models import model_version_create, model_version_promote

    project = Project.objects.create(
        name="Bench predict", slug="bench-predict", kind=Project.Kind.TABULAR,
        feature_names=[f"f{i}" for i in range(N_FEATURES)],
    )
    labels = Label.objects.bulk_create(
        [Label(project=project, name=f"class_{i}", shortcut=str(i + 1), order=i) for i in range(N_CLASSES)]
    )
    _client, token = api_client_create(project=project, name="bench")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, N_FEATURES)).astype(np.float32)
    y = np.argmax(X @ rng.normal(size=(N_FEATURES, N_CLASSES)), axis=1)
    ids = np.array([label.pk for label in labels])
    version = model_version_create(
        project=project, pipeline=fit("tabular", X, ids[y]), classes=ids.tolist(),
        feature_space=f"tabular-v1:{N_FEATURES}", algorithm="logistic regression", hyperparameters={},
        label_snapshot_hash="bench", labels_used=len(y),
    )
    model_version_promote(version, reason="bench", trigger="manual")
    return project, token


class Client:
    def __init__(self, port: int, token: str, path: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.path = path

    def post(self, body: bytes) -> tuple[int, bytes, float]:
        started = time.perf_counter()
        self.connection.request("POST", self.path, body=body, headers=self.headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, data, (time.perf_counter() - started) * 1000


def bodies(n: int, size: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        rows = np.round(rng.normal(size=(size, N_FEATURES)), 4).tolist()
        if size == 1:
            out.append(json.dumps({"values": rows[0]}).encode())
        else:
            out.append(json.dumps({"items": [{"values": row} for row in rows]}).encode())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    args = parser.parse_args()
    singles, batches = (300, 10) if args.quick else (3000, 60)

    with bench_environment("predict") as env:
        import django

        django.setup()
        project, token = project_create()
        path = f"/api/projects/{project.pk}/predict"
        single_bodies = bodies(singles, 1, 1)
        batch_bodies = bodies(8, BATCH, 2)
        port = free_port()
        web = gunicorn_start(env, port)
        errors: list[str] = []
        try:
            warm = [Client(port, token, path) for _ in range(4)]
            for client in warm:  # load the model in every process
                for body in single_bodies[:20] + batch_bodies[:2]:
                    status, data, _ = client.post(body)
                    if status != 200:
                        raise RuntimeError(f"predict answered {status}: {data[:500]!r}")
            client = Client(port, token, path)
            latencies = []
            for body in single_bodies:
                status, data, ms = client.post(body)
                latencies.append(ms)
                if status != 200:
                    errors.append(f"{status} {data[:200]!r}")
            answered = [0] * BATCH_CLIENTS

            def loop(index: int) -> None:
                batch_client = Client(port, token, path)
                for k in range(batches // BATCH_CLIENTS):
                    status, data, _ = batch_client.post(batch_bodies[(index + k) % len(batch_bodies)])
                    if status != 200:
                        errors.append(f"{status} {data[:200]!r}")
                        continue
                    answered[index] += BATCH

            started = time.perf_counter()
            threads = [threading.Thread(target=loop, args=(i,)) for i in range(BATCH_CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            batch_seconds = time.perf_counter() - started
        finally:
            stop(web)
        if errors:
            print(f"{len(errors)} client errors, e.g. {errors[:3]}", file=sys.stderr)
        from learner.models import PredictionLog

        figures = {
            "single_p50_ms": percentile(latencies, 50),
            "single_p99_ms": percentile(latencies, 99),
            "batch_size": BATCH,
            "batch_items_per_s": round(sum(answered) / batch_seconds),
            "requests_single": singles,
            "requests_batch": batches,
            "predictions_logged": PredictionLog.objects.filter(project_id=project.pk).count(),
            "client_errors": len(errors),
        }
    emit("predict_latency", figures)


if __name__ == "__main__":
    main()
