"""Locust users for the load test (benchmarks/load.py starts the stack and runs this headless).

Each user has its own API key (TINYTRAIN_LOAD_KEYS, comma-separated), submits tiny jobs and
polls each until it ends. At the end every submitted job must have succeeded."""

import os
import random
import time
from itertools import count
from typing import Any

from locust import HttpUser, between, events, task

from tests.support.data import tiny_job
from tests.support.keys import bearer

KEYS = os.environ.get("TINYTRAIN_LOAD_KEYS", "").split(",")
_next_key = count()
submitted: list[str] = []
unfinished: list[str] = []


class Trainer(HttpUser):
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        self.client.headers.update(bearer(KEYS[next(_next_key) % len(KEYS)]))

    @task
    def train_one(self) -> None:
        body = tiny_job(200, random.getrandbits(32), epochs=10, batch_size=16)
        with self.client.post("/v1/jobs", json=body, name="POST /v1/jobs", catch_response=True) as r:
            if r.status_code != 202:
                r.failure(f"submit answered {r.status_code}: {r.text[:200]}")
                return
            job_id = r.json()["id"]
        submitted.append(job_id)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with self.client.get(f"/v1/jobs/{job_id}", name="GET /v1/jobs/{id}", catch_response=True) as r:
                status = r.json()["status"] if r.status_code == 200 else None
                if r.status_code != 200:
                    r.failure(f"read answered {r.status_code}")
                    return
                if status == "succeeded":
                    return
                if status not in ("queued", "running"):
                    r.failure(f"job {job_id} ended {status}")
                    return
            time.sleep(0.05)
        unfinished.append(job_id)


@events.quitting.add_listener
def _check_every_job_succeeded(environment: Any, **_: Any) -> None:
    stats = environment.stats.total
    print(f"jobs submitted: {len(submitted)}, unfinished when the run stopped: {len(unfinished)}")
    if stats.num_failures or unfinished:
        environment.process_exit_code = 1
