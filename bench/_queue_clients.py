"""queue_latency's web clients: experts leasing and labeling over the REST API, and the duplicates check."""
from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np


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
