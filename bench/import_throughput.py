"""Import throughput: 100,000 tabular and 100,000 text rows on PostgreSQL, features included.

Each import is timed from the start of the file's import to the moment the Celery worker has
stored features for every created item. Peak RSS is the largest of the importing process and
the worker's processes.
"""
from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import bench_environment, emit, self_peak_rss_mb, start_worker, stop, tree_peak_rss_mb  # noqa: E402

WORDS = (
    "the a patient shows mild severe no sign of fracture lesion normal scan left right upper lower lobe "
    "transaction card merchant refund chargeback unusual amount country login device new verified "
    "good bad great terrible service product delivery late early broken works recommend never again"
).split()


def write_tabular(path: Path, rows: int, columns: int = 13, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", *[f"f{c}" for c in range(columns)]])
        for r in range(rows):
            writer.writerow([f"t{r}", *[f"{rng.gauss(0, 1):.5f}" for _ in range(columns)]])


def write_text(path: Path, rows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "text"])
        for r in range(rows):
            writer.writerow([f"x{r}", " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))])


def timed_import(project, user, path: Path) -> tuple[float, int]:
    from annotations.imports import services
    from annotations.models import ImportJob

    started = time.perf_counter()
    with path.open("rb") as handle:
        (job,) = services.import_jobs_submit(project=project, user=user, uploads=[(path.name, handle)], wait=True)
    if job.status != ImportJob.Status.DONE:
        raise SystemExit(f"import failed: {job.message}")
    while True:
        job.refresh_from_db()
        if job.features_status in (ImportJob.Status.DONE, ImportJob.Status.FAILED):
            break
        time.sleep(0.1)
    if job.features_status != ImportJob.Status.DONE or job.features_done != job.created_count:
        raise SystemExit(f"features incomplete: {job.features_done}/{job.created_count}")
    return time.perf_counter() - started, job.created_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5,000 rows instead of 100,000")
    parser.add_argument("--rows", type=int, default=None)
    args = parser.parse_args()
    rows = args.rows or (5_000 if args.quick else 100_000)

    with tempfile.TemporaryDirectory() as tmp:
        tabular_csv, text_csv = Path(tmp) / "tabular.csv", Path(tmp) / "text.csv"
        write_tabular(tabular_csv, rows)
        write_text(text_csv, rows)
        with bench_environment("import") as env:
            import django

            django.setup()
            from django.contrib.auth import get_user_model

            from annotations.models import Label, Project

            user = get_user_model().objects.create_superuser("bench", password="bench-pass-123")
            tabular = Project.objects.create(name="Bench tabular", slug="bench-tabular", kind="tabular")
            text = Project.objects.create(name="Bench text", slug="bench-text", kind="text")
            for project in (tabular, text):
                Label.objects.bulk_create([Label(project=project, name=n, order=i) for i, n in enumerate("ab")])
            worker = start_worker(env, concurrency=2)
            try:
                tabular_s, tabular_n = timed_import(tabular, user, tabular_csv)
                text_s, text_n = timed_import(text, user, text_csv)
                worker_rss = tree_peak_rss_mb(worker.pid)
            finally:
                stop(worker)
    import_rss = self_peak_rss_mb()
    emit(
        "import_throughput",
        {
            "rows": rows,
            "rows_per_s_tabular": round(tabular_n / tabular_s, 1),
            "rows_per_s_text": round(text_n / text_s, 1),
            "peak_rss_mb": max(import_rss, worker_rss),
            "import_peak_rss_mb": import_rss,
            "worker_peak_rss_mb": worker_rss,
        },
    )


if __name__ == "__main__":
    main()
