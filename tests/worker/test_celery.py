"""The Celery path with real processes: redis-server, `tinytrain worker`s, `tinytrain serve`, HTTP."""

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.reference import NAMES, plain_train
from tests.support.celery import Stack
from tests.support.client import wait_for
from tests.support.data import INIT, PLAIN_LOOP_HP, SECONDS_OF_TRAINING, sine_points
from tests.support.keys import bearer
from tests.support.server import Server

FOREVER = {"learning_rate": 0.001, "batch_size": 1, "epochs": 100000}


def test_float64_job_through_celery_matches_the_plain_loop(celery_stack: Callable[..., Stack]) -> None:
    stack = celery_stack()
    points = sine_points(203)
    hp = {**PLAIN_LOOP_HP, "device": "cpu"}
    with stack.server.client() as c:
        job = wait_for(c, c.post("/v1/jobs", json={"dataset": points, "hyperparameters": hp}).json()["id"], "succeeded")
        result = c.get(f"/v1/jobs/{job['id']}/result").json()
    assert job["device"] == "cpu" and job["attempts"] == 1
    params, history = plain_train(points["x"], points["y"], INIT, 0.3, 32, 5)
    for k in NAMES:
        assert result["parameters"][k] == pytest.approx(params[k], rel=1e-9, abs=1e-12)
    assert result["loss_history"] == pytest.approx(history, rel=1e-9)


def test_a_killed_worker_is_replaced_after_the_lease_and_the_job_succeeds_once(
    celery_stack: Callable[..., Stack],
) -> None:
    stack = celery_stack(workers=1, lease_seconds="2")
    with stack.server.client() as c:
        job_id = c.post(
            "/v1/jobs", json={"dataset": sine_points(200_000), "hyperparameters": SECONDS_OF_TRAINING}
        ).json()["id"]
        wait_for(c, job_id, "running", epochs_completed=1)
        stack.workers[0].kill()
        stack.add_worker()
        job = wait_for(c, job_id, "succeeded", timeout=120)
    assert job["attempts"] == 2 and job["result"]["epochs_completed"] == 600


def test_a_job_whose_worker_always_dies_fails_with_worker_lost(celery_stack: Callable[..., Stack]) -> None:
    stack = celery_stack(workers=1, lease_seconds="1")
    with stack.server.client() as c:
        job_id = c.post("/v1/jobs", json={"dataset": sine_points(20_000), "hyperparameters": FOREVER}).json()["id"]
        for attempt in (1, 2, 3):
            job = wait_for(c, job_id, "running", timeout=60)
            assert job["attempts"] == attempt
            stack.workers[-1].kill()
            stack.add_worker()
        job = wait_for(c, job_id, "failed", timeout=60)
        assert job["error"]["code"] == "worker_lost" and job["attempts"] == 3
        time.sleep(3)  # no loop: it stays failed, nobody runs it again
        assert c.get(f"/v1/jobs/{job_id}").json()["attempts"] == 3


def test_redis_restart_and_redis_down_at_submit(celery_stack: Callable[..., Stack]) -> None:
    stack = celery_stack()
    small = {"dataset": sine_points(100), "hyperparameters": {"epochs": 5}}
    with stack.server.client() as c:
        wait_for(c, c.post("/v1/jobs", json=small).json()["id"], "succeeded")
        stack.redis.stop()
        before = c.get("/v1/jobs").json()["items"]
        started = time.monotonic()
        down = c.post("/v1/jobs", json=small)
        assert down.status_code == 503 and time.monotonic() - started < 3
        assert c.get("/v1/jobs").json()["items"] == before  # no orphan job
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "queue" in ready.json()["detail"]
        stack.redis.start()  # same port, same worker and serve processes
        deadline = time.monotonic() + 30
        while (r := c.post("/v1/jobs", json=small)).status_code != 202:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.5)
        assert wait_for(c, r.json()["id"], "succeeded", timeout=60)["attempts"] == 1
        assert c.get("/readyz").status_code == 200


def test_cancel_queued_and_running_jobs(celery_stack: Callable[..., Stack]) -> None:
    stack = celery_stack(workers=1)
    with stack.server.client() as c:
        running = c.post("/v1/jobs", json={"dataset": sine_points(20_000), "hyperparameters": FOREVER}).json()["id"]
        wait_for(c, running, "running", epochs_completed=1)
        queued = c.post("/v1/jobs", json={"dataset": sine_points(10), "hyperparameters": {"batch_size": 2}}).json()
        assert c.post(f"/v1/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"
        asked = time.monotonic()
        c.post(f"/v1/jobs/{running}/cancel")
        job = wait_for(c, running, "cancelled", timeout=5)
        assert time.monotonic() - asked < 1.0 and job["result"]["epochs_completed"] >= 1
        time.sleep(1)  # its message reached the free worker by now: it must not have started
        never = c.get(f"/v1/jobs/{queued['id']}").json()
        assert (never["status"], never["attempts"], never["started_at"]) == ("cancelled", 0, None)


def test_80_concurrent_jobs_from_16_clients_with_2_workers(celery_stack: Callable[..., Stack]) -> None:
    stack = celery_stack(workers=2)
    ids: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with stack.server.client() as c:
            for i in range(5):
                body = {"dataset": sine_points(500, seed=n * 10 + i), "hyperparameters": {"epochs": 20}}
                r = c.post("/v1/jobs", json=body)
                assert r.status_code == 202, r.text
                with lock:
                    ids.append(r.json()["id"])

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(client, range(16)))
    assert len(set(ids)) == 80
    with stack.server.client() as c:
        jobs = [wait_for(c, job_id, "succeeded", timeout=120) for job_id in ids]
    assert all(j["attempts"] == 1 and j["result"]["epochs_completed"] == 20 for j in jobs)
    logs = "".join(p.read_text() for p in stack.workdir.glob("worker-*.log"))
    assert logs.count("succeeded in") == 80  # each job ran exactly once, no duplicates
    assert httpx.get(f"{stack.server.url}/readyz").status_code == 200


def test_rate_limit_is_counted_in_redis_across_serve_processes(celery_stack: Callable[..., Stack]) -> None:
    stack = celery_stack(workers=0, rate_limit="10/day")  # one window: see test_api4_rate_limit_per_key
    second = Server(stack.workdir, stack.env, key=stack.server.key)
    second.start()
    try:
        statuses = []
        for i in range(14):  # alternating between the two processes: one count in Redis
            server = stack.server if i % 2 else second
            statuses.append(httpx.get(f"{server.url}/v1/jobs", headers=bearer(server.key)).status_code)
        assert statuses.count(200) == 10 and statuses[10:] == [429] * 4
    finally:
        second.stop()
