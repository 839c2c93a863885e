"""No job waits forever or runs twice: lost messages, killed processes, a database or a queue
that goes away and comes back. Real processes throughout: serve, its local pool, Celery workers,
redis-server, PostgreSQL (reached through a TCP forwarder that can cut it off)."""

import os
import signal
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from jobs.tables import new_id
from tests.support.celery import Stack, Worker
from tests.support.client import wait_for
from tests.support.data import sine_points
from tests.support.proxy import Proxy
from tests.support.server import Server

# Seconds of training on this machine (40M steps), in many short engine calls (many heartbeats).
A_FEW_SECONDS = {"learning_rate": 0.001, "batch_size": 1, "epochs": 20_000, "device": "cpu"}
SHORT = {"learning_rate": 0.1, "batch_size": 8, "epochs": 20}


def pool_processes(serve_pid: int) -> list[int]:
    """The local executor's pool processes: serve's children started by multiprocessing's spawn."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == serve_pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def submit(c: httpx.Client, points: dict[str, list[float]], hp: Mapping[str, object]) -> str:
    response = c.post("/v1/jobs", json={"dataset": points, "hyperparameters": hp})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_a_killed_pool_process_loses_no_job_and_the_pool_comes_back(make_server: Callable[..., Server]) -> None:
    server = make_server(local_workers="2", lease_seconds="2", redispatch_seconds="2")
    assert server.process is not None
    with server.client() as c:
        busy = [submit(c, sine_points(2000), A_FEW_SECONDS) for _ in range(2)]
        for job_id in busy:
            job = wait_for(c, job_id, "running", epochs_completed=1)
            assert job["device"] == "cpu"  # known from the claim on, not only at the end
        waiting = [submit(c, sine_points(50, seed=k), SHORT) for k in range(5)]
        assert {c.get(f"/v1/jobs/{j}").json()["status"] for j in waiting} == {"queued"}
        with ThreadPoolExecutor(1) as pool:
            # The dead process's runs end in the pool without ending the job: a request waiting
            # for one must wait on for the run the reaper starts again, not answer "running".
            waited = pool.submit(c.get, f"/v1/jobs/{busy[0]}", headers={"Prefer": "wait=60"}, timeout=70)
            time.sleep(0.5)
            # One process dies: its run waits for the reaper, the queued runs for the other process.
            os.kill(pool_processes(server.process.pid)[0], signal.SIGKILL)
            assert waited.result().json()["status"] == "succeeded"
        for job_id in busy + waiting:
            assert wait_for(c, job_id, "succeeded", "failed", timeout=60)["status"] == "succeeded"
        time.sleep(15)  # idle: nothing is sent meanwhile
        later = submit(c, sine_points(50), SHORT)
        job = wait_for(c, later, "succeeded", "failed", timeout=30)
    assert job["status"] == "succeeded" and job["attempts"] == 1


def test_readyz_answers_at_once_while_every_local_worker_trains(make_server: Callable[..., Server]) -> None:
    server = make_server(local_workers="2")
    with server.client() as c:
        jobs = [submit(c, sine_points(2000), A_FEW_SECONDS) for _ in range(2)]
        for job_id in jobs:
            wait_for(c, job_id, "running", epochs_completed=1)

        # One client for the 20 threads: a client apiece builds 20 TLS contexts, whose CPU, on a
        # machine the two trainings keep busy, would be most of the time measured.
        with httpx.Client(base_url=server.url, timeout=10, limits=httpx.Limits(max_connections=20)) as probe:

            def readyz(_: int) -> tuple[int, float]:
                started = time.monotonic()
                status = probe.get("/readyz").status_code
                return status, time.monotonic() - started

            with ThreadPoolExecutor(20) as pool:
                answers = list(pool.map(readyz, range(20)))
        assert all(c.get(f"/v1/jobs/{j}").json()["status"] == "running" for j in jobs)
    assert [status for status, _ in answers] == [200] * 20
    assert max(seconds for _, seconds in answers) < 1.0, answers


def test_a_job_whose_message_redis_lost_with_its_worker_runs_when_both_are_back(
    celery_stack: Callable[..., Stack],
) -> None:
    stack = celery_stack(workers=1, lease_seconds="2")
    with stack.server.client() as c:
        job_id = submit(c, sine_points(2000), A_FEW_SECONDS)
        wait_for(c, job_id, "running", epochs_completed=1)
        stack.workers[0].kill()
        stack.redis.stop()  # keeps nothing: the message is gone with it
        time.sleep(3 * 2)  # past the lease: the reaper queues the job again, and cannot send it
        assert c.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
        stack.redis.start()
        stack.add_worker()
        back = time.monotonic()
        job = wait_for(c, job_id, "succeeded", "failed", timeout=60)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    # Sent within a reaper pass of Redis coming back, then a few seconds of training.
    assert time.monotonic() - back < 2 * 2 + 10


def test_serve_starts_while_redis_is_down_with_a_job_queued_and_catches_up(
    celery_stack: Callable[..., Stack],
) -> None:
    stack = celery_stack(workers=0, lease_seconds="2")
    with stack.server.client() as c:
        job_id = submit(c, sine_points(50), SHORT)
    stack.server.stop()
    stack.redis.stop()
    stack.server.start(ready="/healthz")
    ready = httpx.get(f"{stack.server.url}/readyz")
    assert ready.status_code == 503 and "queue" in ready.json()["detail"]
    stack.redis.start()
    stack.add_worker()
    with stack.server.client() as c:
        job = wait_for(c, job_id, "succeeded", "failed", timeout=60)
    assert job["status"] == "succeeded"
    assert httpx.get(f"{stack.server.url}/readyz").status_code == 200


def via(proxy: Proxy, url: str) -> str:
    """url with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))


@pytest.fixture
def worker_behind_proxy(celery_stack: Callable[..., Stack], postgres_url: str) -> tuple[Stack, Proxy, Worker]:
    """A stack whose one worker reaches PostgreSQL through a Proxy (serve reaches it directly)."""
    stack = celery_stack(workers=0, lease_seconds="10")
    proxy = Proxy(urlsplit(postgres_url).port or 5432)
    proxy.up()
    worker = Worker(
        {**stack.env, "TINYTRAIN_DATABASE_URL": via(proxy, postgres_url)}, stack.workdir, ("--concurrency", "1")
    )
    worker.start()
    stack.workers.append(worker)
    return stack, proxy, worker


def test_a_run_waits_for_its_claim_while_the_database_is_unreachable(
    worker_behind_proxy: tuple[Stack, Proxy, Worker],
) -> None:
    stack, proxy, _ = worker_behind_proxy
    proxy.down()
    with stack.server.client() as c:
        job_id = submit(c, sine_points(50), SHORT)  # the message arrives; its claim fails
        time.sleep(3)
        assert c.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
        proxy.up()
        # Long before the sweeper would send it again (redispatch_seconds: 60).
        job = wait_for(c, job_id, "succeeded", "failed", timeout=15)
    assert job["status"] == "succeeded" and job["attempts"] == 1


def test_a_heartbeat_that_finds_the_database_gone_does_not_fail_the_run(
    worker_behind_proxy: tuple[Stack, Proxy, Worker],
) -> None:
    stack, proxy, _ = worker_behind_proxy
    with stack.server.client() as c:
        job_id = submit(c, sine_points(2000), A_FEW_SECONDS)
        wait_for(c, job_id, "running", epochs_completed=1)
        proxy.down()  # shorter than the lease: the run must train on
        time.sleep(2)
        proxy.up()
        job = wait_for(c, job_id, "succeeded", "failed", timeout=60)
        result = c.get(f"/v1/jobs/{job_id}/result").json()
    assert (job["status"], job["attempts"]) == ("succeeded", 1)
    assert len(result["loss_history"]) == 20_000


def test_device_cuda_needs_a_live_gpu_worker(celery_stack: Callable[..., Stack], postgres_url: str) -> None:
    stack = celery_stack(workers=1)  # this machine's worker reads cpu and train, not gpu
    body = {"dataset": sine_points(50), "hyperparameters": {**SHORT, "device": "cuda"}}
    with stack.server.client() as c:
        refused = c.post("/v1/jobs", json=body)
        assert refused.status_code == 422 and "GPU worker" in refused.text, refused.text
        sweep = c.post("/v1/sweeps", json={**body, "grid": {"learning_rate": [0.1, 0.2]}})
        assert sweep.status_code == 422 and "GPU worker" in sweep.text, sweep.text
        # A GPU worker says it is alive (as `tinytrain worker` on a GPU machine does every pass).
        with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(
                "INSERT INTO workers (name, queues, seen_at) VALUES (%s, 'gpu,train', timezone('UTC', now()))",
                (new_id("gpu"),),
            )
        accepted = c.post("/v1/jobs", json=body)
        assert accepted.status_code == 202, accepted.text
        assert c.post(f"/v1/jobs/{accepted.json()['id']}/cancel").status_code == 202
