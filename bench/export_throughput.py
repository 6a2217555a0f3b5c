"""Export throughput: 1,000,000 annotations streamed out of PostgreSQL through gunicorn as JSONL and CSV.

A text project with 500,000 items, each labeled by two of four experts (1,000,000 annotations),
written with COPY. gunicorn (4 processes × 4 threads, as queue_latency starts it) serves
``GET /api/projects/{id}/export?mode=all`` to one client with a manager's token, once as JSONL and
once as CSV; the client reads the stream to the end and counts rows. ``first_byte_s`` is the
slower of the two times from sending the request to the first body byte; ``peak_rss_mb`` the
largest peak resident set (VmHWM from /proc) among gunicorn's processes, ``baseline_rss_mb`` the
same before the first export (the app loaded, nothing exported). ``--quick``: 100,000 annotations.
"""
from __future__ import annotations

import argparse
import http.client
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import bench_environment, emit, free_port, gunicorn_start, stop, tree_peak_rss_mb

EXPERTS = 4
PER_ITEM = 2
COPY_LINES = 100_000


def _copy_lines(cursor, statement: str, lines) -> None:
    """COPY text lines (tab-separated, \\N for NULL) in blocks."""
    block: list[str] = []
    for line in lines:
        block.append(line)
        if len(block) >= COPY_LINES:
            with cursor.copy(statement) as copy:
                copy.write("".join(block))
            block = []
    if block:
        with cursor.copy(statement) as copy:
            copy.write("".join(block))


def project_create(n_annotations: int):
    """A text project with n_annotations / 2 items, each labeled by two experts; the manager's token."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from knox.models import AuthToken

    from annotations.models import Label, Membership, Project

    project = Project.objects.create(name="Bench export", slug="bench-export", kind=Project.Kind.TEXT)
    labels = Label.objects.bulk_create([Label(project=project, name=n, order=i) for i, n in enumerate(["no", "yes"])])
    User = get_user_model()
    manager = User.objects.create_user("exporter", password="bench-pass-123")
    Membership.objects.create(project=project, user=manager, role=Membership.Role.MANAGER)
    experts = [User.objects.create_user(f"expert{i}", password="bench-pass-123") for i in range(EXPERTS)]
    token = AuthToken.objects.create(user=manager)[1]
    n_items = n_annotations // PER_ITEM
    now = datetime.now(UTC).isoformat()
    with connection.cursor() as cursor:
        raw = cursor.cursor
        _copy_lines(
            raw,
            "COPY annotations_item (project_id, external_id, text, image, thumbnail, metadata, content_hash, created_at,"
            " label_count, queue_done, random_key) FROM STDIN",
            (f"{project.pk}\te{n:07d}\tReview number {n}: a short text of the kind experts label\t\t\t{{}}\t"
             f"{n:064x}\t{now}\t{PER_ITEM}\tt\t{(n * 0.618034) % 1:.6f}\n" for n in range(n_items)),
        )
        cursor.execute("SELECT id FROM annotations_item WHERE project_id = %s ORDER BY id", [project.pk])
        item_ids = [row[0] for row in cursor.fetchall()]
        label_ids = [label.pk for label in labels]
        expert_ids = [expert.pk for expert in experts]
        _copy_lines(
            raw,
            "COPY annotations_annotation (item_id, annotator_id, label_id, source, created_at, updated_at,"
            " time_spent_ms, is_audit, model_version, predicted_label_id, predicted_confidence) FROM STDIN",
            (f"{item_id}\t{expert_ids[(k + j) % EXPERTS]}\t{label_ids[(k * 7 + j) % 3 % 2]}\tqueue\t{now}\t{now}\t"
             f"{1500 + k % 900}\t{'t' if k % 10 == 0 else 'f'}\t1\t{label_ids[k % 2]}\t0.{k % 90 + 10}\n"
             for k, item_id in enumerate(item_ids) for j in range(PER_ITEM)),
        )
        # As autovacuum would leave them: statistics, and hint bits set (a first read of freshly
        # copied rows would otherwise write every page).
        cursor.execute("VACUUM (ANALYZE) annotations_item")
        cursor.execute("VACUUM (ANALYZE) annotations_annotation")
    return project, token


def export(port: int, token: str, path: str) -> tuple[int, float, float]:
    """Read one export to the end: (newline-terminated lines, seconds to the first body byte, total seconds)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    connection.request("GET", path, headers={"Authorization": f"Token {token}"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"export answered {response.status}: {response.read()[:500]!r}")
    first = response.read1(65536)
    first_byte = time.perf_counter() - started
    lines = first.count(b"\n")
    while chunk := response.read1(1 << 20):
        lines += chunk.count(b"\n")
    total = time.perf_counter() - started
    connection.close()
    return lines, first_byte, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100,000 annotations")
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000

    with bench_environment("export") as env:
        import django

        django.setup()
        project, token = project_create(n)
        port = free_port()
        env = {**env, "THROTTLE_EXPORT": "1000/hour"}
        web = gunicorn_start(env, port, log_name="gunicorn-export", boot_timeout=300, request_timeout=600)
        try:
            baseline = tree_peak_rss_mb(web.pid)  # the processes with the app loaded, before any export
            base = f"/api/projects/{project.pk}/export?mode=all"
            jsonl_rows, jsonl_first, jsonl_s = export(port, token, base + "&format=jsonl")
            csv_lines, csv_first, csv_s = export(port, token, base + "&format=csv")
            peak = tree_peak_rss_mb(web.pid)
        finally:
            stop(web)
        csv_rows = csv_lines - 1  # the header
        if jsonl_rows != n or csv_rows != n:
            print(f"row counts differ from {n}: jsonl {jsonl_rows}, csv {csv_rows}", file=sys.stderr)
        figures = {
            "rows": n,
            "jsonl_rows_per_s": round(jsonl_rows / jsonl_s),
            "csv_rows_per_s": round(csv_rows / csv_s),
            "first_byte_s": round(max(jsonl_first, csv_first), 3),
            "peak_rss_mb": peak,
            "baseline_rss_mb": baseline,
            "jsonl_rows": jsonl_rows,
            "csv_rows": csv_rows,
            "jsonl_s": round(jsonl_s, 2),
            "csv_s": round(csv_s, 2),
        }
    emit("export_throughput", figures)


if __name__ == "__main__":
    main()
