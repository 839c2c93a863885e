"""Prefer: wait (RFC 7240) on submit and read: one request for a tiny job's result, answers at the
wait's end at the latest, holds no thread while it waits; a wait that is not 0..60 is a 400."""

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from api.live import Watcher
from tests.support.celery import Stack
from tests.support.data import sine_points
from tests.support.server import Server

TINY = {"dataset": sine_points(200), "hyperparameters": {"epochs": 10}}
LONG_HP = {"epochs": 100_000, "batch_size": 1, "device": "cpu"}
LONG = {"dataset": sine_points(1000), "hyperparameters": LONG_HP}


def test_a_tiny_job_is_one_request_and_a_long_one_answers_at_the_waits_end(shared_server: Server) -> None:
    with shared_server.client() as c:
        done = c.post("/v1/jobs", json=TINY, headers={"Prefer": "wait=30"})
        assert done.status_code == 200 and done.headers["Preference-Applied"] == "wait=30"
        job = done.json()
        assert job["status"] == "succeeded" and job["result"]["epochs_completed"] == 10
        assert done.headers["Location"] == f"/v1/jobs/{job['id']}"
        plain = c.post("/v1/jobs", json=TINY)  # without the header: at once, as before
        assert plain.status_code == 202 and "Preference-Applied" not in plain.headers

        started = time.monotonic()
        slow = c.post("/v1/jobs", json=LONG, headers={"Prefer": "respond-async, wait=1"})
        assert slow.status_code == 202 and slow.json()["status"] in ("queued", "running")
        # By the wait's end at the latest (the answer is sent a moment before it), not at once.
        assert 0.75 <= time.monotonic() - started < 2
        job_id = slow.json()["id"]
        started = time.monotonic()
        read = c.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=2"})
        assert read.status_code == 200 and read.json()["status"] == "running"
        assert 1.75 <= time.monotonic() - started < 3
        # Cancelled while a reader waits: the reader is answered when the job ends, not at 30 s.
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(c.get, f"/v1/jobs/{job_id}", headers={"Prefer": "wait=30"})
            time.sleep(0.5)
            started = time.monotonic()
            assert c.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
            assert waiting.result().json()["status"] == "cancelled"
            assert time.monotonic() - started < 3
        ended = c.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=60"})  # ended: at once
        assert ended.json()["status"] == "cancelled"


def test_a_wait_that_is_not_a_number_of_seconds_up_to_60_is_a_400(shared_server: Server) -> None:
    with shared_server.client() as c:
        job_id = c.post("/v1/jobs", json=TINY).json()["id"]
        for bad in ("wait=abc", "wait=61", "wait=-1", "wait=1.5", "wait="):
            for response in (
                c.get(f"/v1/jobs/{job_id}", headers={"Prefer": bad}),
                c.post("/v1/jobs", json=TINY, headers={"Prefer": bad}),
            ):
                assert response.status_code == 400 and "Prefer: wait" in response.json()["detail"], bad
        # Other preferences are not ours to refuse.
        assert c.get(f"/v1/jobs/{job_id}", headers={"Prefer": "return=minimal"}).status_code == 200


def test_a_hundred_waiting_requests_hold_no_threads(make_server: Callable[..., Server]) -> None:
    server = make_server()
    assert server.process is not None
    with server.client() as c:
        forever = {**LONG, "hyperparameters": {**LONG_HP, "epochs": 1_000_000}}
        job_id = c.post("/v1/jobs", json=forever).json()["id"]
        before = len(os.listdir(f"/proc/{server.process.pid}/task"))
        clients = [httpx.Client(base_url=server.url, headers=c.headers, timeout=30) for _ in range(100)]
        with ThreadPoolExecutor(100) as pool:
            waiting = [pool.submit(k.get, f"/v1/jobs/{job_id}", headers={"Prefer": "wait=4"}) for k in clients]
            time.sleep(2)
            during = len(os.listdir(f"/proc/{server.process.pid}/task"))
            # Meanwhile the service answers others at once.
            started = time.monotonic()
            assert httpx.get(f"{server.url}/v1/jobs/{job_id}", headers=c.headers).status_code == 200
            assert time.monotonic() - started < 0.5
            answers = [w.result() for w in waiting]
            assert {(a.status_code, a.json()["status"]) for a in answers} == {(200, "running")}, answers[0].text
        for k in clients:
            k.close()
        c.post(f"/v1/jobs/{job_id}/cancel")
    assert during - before <= 2, (before, during)


def test_prefer_wait_with_celery_is_answered_when_the_worker_announces_the_end(
    celery_stack: Callable[..., Stack],
) -> None:
    stack = celery_stack(workers=1)
    with stack.server.client() as c:
        c.post("/v1/jobs", json=TINY, headers={"Prefer": "wait=30"})  # warm
        started = time.monotonic()
        done = c.post("/v1/jobs", json=TINY, headers={"Prefer": "wait=30"})
        elapsed = time.monotonic() - started
    assert done.status_code == 200 and done.json()["status"] == "succeeded"
    assert elapsed < 2, elapsed


def test_a_request_that_starts_waiting_after_its_job_ended_is_answered_from_the_row_at_once() -> None:
    """The executor's word that a run ended comes before the request follows it (a tiny job can
    end before its submit's answer starts to wait): the watcher remembers it and the row."""
    row = {"id": "job_x", "status": "succeeded"}

    async def scenario() -> tuple[bool, dict[str, str] | None, bool]:
        # No poll within this test: only the executor's word counts.
        watcher = Watcher(interval=60, max_streams=1, max_waiting=1, stream_bytes=1024)
        watcher.start()
        await asyncio.to_thread(watcher.poke, "job_x", row)  # from the executor's side, as it does
        await asyncio.sleep(0)  # the poke is handled on the loop
        async with watcher.follow("job_x", stream=False):
            ended, given = watcher.ended("job_x").is_set(), watcher.ended_row("job_x")
        async with watcher.follow("job_y", stream=False):
            other = watcher.ended("job_y").is_set()
        await watcher.stop()
        return ended, given, other

    assert asyncio.run(scenario()) == (True, row, False)
