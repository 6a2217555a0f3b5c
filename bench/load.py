"""Load test: 16 experts label through the REST API for 5 minutes while the model is retrained and swapped.

Locust (headless, bounded by users and time) drives gunicorn; a Celery worker runs the count
trigger's retrains, the gate, the swap and the rescoring, and a manager asks for one more
retrain a third of the way in. The experts answer from the synthetic rule the pool was drawn
with (5% of answers wrong), so candidates can really beat the champion and swaps happen under
load. Afterwards the database is checked: every submit the server accepted has its
annotation (`lost`), no item is labeled beyond the overlap nor leased to two experts at
once (`duplicated`), and every request either succeeded or counts in `errors`.
"""
from __future__ import annotations

import argparse
import csv
import http.client
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import BIN, bench_environment, emit, free_port, gunicorn_start, start, start_worker, stop  # noqa: E402
from bench.queue_latency import (  # noqa: E402
    duplicates,
    labels_create,
    model_create,
    pool_create,
    project_create,
    scoring_wait,
)

USERS = 16
POOL = 50_000
RETRAIN_EVERY = 200


def manual_retrain(port: int, token: str, project_id: int) -> int:
    """Ask for a retrain over the API as a manager would; return the HTTP status (409 while one runs)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", f"/api/projects/{project_id}/retrain", body=json.dumps({"note": "load test"}),
                       headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    status = connection.getresponse().status
    connection.close()
    return status


def locust_stats(prefix: Path) -> dict[str, dict[str, str]]:
    """Locust's per-request statistics (its --csv output), keyed by request name."""
    with open(f"{prefix}_stats.csv", newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="30 seconds on a 10,000-item pool")
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds an expert looks at an item")
    args = parser.parse_args()
    duration = 30 if args.quick else 300
    pool_size = 10_000 if args.quick else POOL

    with bench_environment("load") as env:
        import django

        django.setup()
        from learner.models import TrainingRun
        from learner.services.models import model_version_promote

        project, labels, tokens, manager_token = _project_with_manager()
        ids, X = pool_create(project.pk, pool_size)
        labeled, y_all = labels_create(ids, X, labels)

        work = Path(env["VAR_DIR"])
        oracle = work / "oracle.json"
        oracle.write_text(json.dumps({int(i): labels[int(c)].pk for i, c in zip(ids, y_all)}))
        accepted = work / "accepted.txt"
        accepted.touch()

        worker = start_worker(env, concurrency=2, queues="default,scoring,training", name="load")
        port = free_port()
        web = None
        try:
            started = time.perf_counter()
            version = model_create(project, labels, X[labeled], y_all[labeled])
            model_version_promote(version, reason="load test: first model")
            scoring_wait(project.pk, version.number, started)
            web = gunicorn_start(env, port)
            prefix = work / "locust"
            locust_env = {
                **env, "LOAD_TOKENS": ",".join(tokens), "LOAD_PROJECT": str(project.pk),
                "LOAD_ORACLE": str(oracle), "LOAD_SUBMITS": str(accepted), "LOAD_THINK_S": str(args.think),
            }
            window_start = time.time()
            runs_before = TrainingRun.objects.filter(project=project).count()
            locust = start(
                [str(BIN / "locust"), "-f", str(Path(__file__).with_name("_load_locustfile.py")), "--headless",
                 "-u", str(USERS), "-r", str(USERS), "-t", f"{duration}s", "--host", f"http://127.0.0.1:{port}",
                 "--csv", str(prefix), "--only-summary", "--stop-timeout", "10", "--exit-code-on-error", "0"],
                locust_env, "locust",
            )
            time.sleep(duration / 3)
            manual_status = manual_retrain(port, manager_token, project.pk)
            locust.wait(timeout=duration + 120)
            window_end = time.time()
            # Let the last labels' tasks and any retrain finish before checking the database.
            deadline = time.monotonic() + 300
            while TrainingRun.objects.filter(project=project, status__in=["queued", "running"]).exists():
                if time.monotonic() > deadline:
                    break
                time.sleep(1)
        finally:
            if web is not None:
                stop(web)
            stop(worker)

        figures = _figures(project, prefix, accepted, window_start, window_end, runs_before)
        figures.update({"duration_s": duration, "think_s": args.think, "pool_size": pool_size,
                        "manual_retrain_status": manual_status})
    emit("load", figures)


def _project_with_manager():
    """The tabular project of USERS experts (retraining every RETRAIN_EVERY labels) and a manager's API token."""
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    from annotations.models import Membership

    project, labels, tokens = project_create(USERS)
    project.retrain_every_n_labels = RETRAIN_EVERY
    project.save(update_fields=["retrain_every_n_labels"])
    manager = get_user_model().objects.create_user("manager", password="bench-pass-123")
    Membership.objects.create(project=project, user=manager, role=Membership.Role.MANAGER)
    return project, labels, tokens, AuthToken.objects.create(user=manager)[1]


def _figures(project, prefix: Path, accepted: Path, window_start: float, window_end: float, runs_before: int) -> dict:
    """Locust's counts and percentiles, and what the database says was lost, duplicated, retrained and swapped."""
    from annotations.models import Annotation
    from learner.models import SwapHistory, TrainingRun

    stats = locust_stats(prefix)
    total = stats["Aggregated"]
    lines = [line.split() for line in accepted.read_text().splitlines() if line.strip()]
    stored = set(
        str(lease) for lease in Annotation.objects.filter(lease_id__in=[lease for lease, _, _ in lines])
        .values_list("lease_id", flat=True)
    )
    lost = sum(1 for lease, _, _ in lines if lease not in stored)
    swaps = SwapHistory.objects.filter(project=project, created_at__gte=_aware(window_start),
                                       created_at__lte=_aware(window_end)).count()
    runs = TrainingRun.objects.filter(project=project).order_by("created_at")[runs_before:]
    outcomes = [run.status for run in runs]
    return {
        "users": USERS,
        "requests": int(total["Request Count"]),
        "errors": int(total["Failure Count"]),
        "labels_accepted": len(lines),
        "lost": lost,
        "duplicated": duplicates(project.pk, project.overlap),
        "next_p99_ms": float(stats["next"]["99%"]) if "next" in stats else None,
        "submit_p99_ms": float(stats["submit"]["99%"]) if "submit" in stats else None,
        "retrains": len(outcomes),
        "retrains_failed": outcomes.count(TrainingRun.Status.FAILED),
        "swaps": swaps,
    }


def _aware(timestamp: float):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


if __name__ == "__main__":
    main()
