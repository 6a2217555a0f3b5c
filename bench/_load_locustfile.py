"""Locust users for bench/load.py: experts who lease the next item over the REST API and label it.

Each user takes its own token from LOAD_TOKENS, answers from the oracle in LOAD_ORACLE
(item id → label id) and appends every submit the server accepted to LOAD_SUBMITS, one
``lease_id item_id label_id`` line, so that load.py can check each one against the database.
"""
from __future__ import annotations

import itertools
import json
import os
import random

from locust import HttpUser, between, events, task

TOKENS = os.environ["LOAD_TOKENS"].split(",")
PROJECT = int(os.environ["LOAD_PROJECT"])
THINK_S = float(os.environ.get("LOAD_THINK_S", "1.0"))
with open(os.environ["LOAD_ORACLE"]) as handle:
    ORACLE = {int(k): v for k, v in json.load(handle).items()}
LABELS = sorted(set(ORACLE.values()))
_next_token = itertools.count()
_accepted = open(os.environ["LOAD_SUBMITS"], "a", buffering=1)


class Expert(HttpUser):
    """One expert: next, think, submit the right label (now and then a wrong one, as people do)."""

    wait_time = between(0, 2 * THINK_S) if THINK_S else between(0, 0)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Token {TOKENS[next(_next_token) % len(TOKENS)]}"

    @task
    def label_next(self) -> None:
        with self.client.post(f"/api/projects/{PROJECT}/queue/next", json={}, name="next",
                              catch_response=True) as response:
            if response.status_code == 204:
                response.success()
                return
            if response.status_code != 200:
                response.failure(f"next answered {response.status_code}: {response.text[:200]}")
                return
            served = response.json()
        item_id = served["item"]["id"]
        label_id = ORACLE[item_id]
        if random.random() < 0.05:
            label_id = random.choice(LABELS)
        with self.client.post(f"/api/leases/{served['lease']['id']}/submit",
                              json={"label_id": label_id, "time_spent_ms": 1500}, name="submit",
                              catch_response=True) as response:
            if response.status_code in (200, 201):
                _accepted.write(f"{served['lease']['id']} {item_id} {label_id}\n")
                response.success()
            else:
                response.failure(f"submit answered {response.status_code}: {response.text[:200]}")


@events.quitting.add_listener
def _close(environment, **kwargs) -> None:
    _accepted.close()
