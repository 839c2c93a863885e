"""Live events against real serve processes (local executor, and Celery workers): the progress
events rebuild the loss history exactly, resume from Last-Event-ID, end after the terminal
status, and a client that leaves leaves nothing running."""

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

import model
from jobs.hyperparameters import config_from
from tests.support.celery import Stack
from tests.support.client import wait_for
from tests.support.data import sine_points
from tests.support.server import Server, serving

# A second or two of training in many engine calls: many progress events.
STEADY = {"learning_rate": 0.01, "batch_size": 1, "epochs": 4000, "device": "cpu", "validation_fraction": 0.2}


def events(c: httpx.Client, path: str, last_event_id: str | None = None) -> Iterator[ServerSentEvent]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    with connect_sse(c, "GET", path, headers=headers) as source:
        assert source.response.status_code == 200
        yield from source.iter_sse()


def follow(
    c: httpx.Client, job_id: str, last_event_id: str | None = None
) -> tuple[list[float], list[float], list[str]]:
    """The whole stream: the concatenated loss and validation loss of its progress events, and its statuses."""
    loss: list[float] = []
    val: list[float] = []
    statuses: list[str] = []
    start = int(last_event_id or 0)
    for event in events(c, f"/v1/jobs/{job_id}/events", last_event_id):
        data = event.json()
        if event.event == "progress":
            assert data["start"] == start + len(loss)  # no gap, no repeat
            assert int(event.id) == data["epochs_completed"] == data["start"] + len(data["loss"])
            loss += data["loss"]
            val += data["validation_loss"]
        else:
            assert event.event == "status"
            statuses.append(data["status"])
    return loss, val, statuses


def submit(c: httpx.Client, hp: dict[str, Any], n: int = 2000) -> str:
    response = c.post("/v1/jobs", json={"dataset": sine_points(n), "hyperparameters": hp})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Progress written every 10 ms, so that a job trained fast on a quick machine still sends
    several progress events before it ends."""
    with serving(tmp_path_factory.mktemp("serve"), progress_interval_seconds="0.01") as started:
        yield started


def test_progress_events_rebuild_the_history_exactly_and_the_stream_ends(server: Server) -> None:
    with server.client() as c:
        job_id = submit(c, STEADY)
        loss, val, statuses = follow(c, job_id)
        result = c.get(f"/v1/jobs/{job_id}/result").json()
    assert statuses[-1] == "succeeded" and "running" in statuses
    assert loss == result["loss_history"] and val == result["validation_loss_history"]
    assert len(loss) == 4000


def test_progress_events_carry_the_parameters_after_their_last_epoch(server: Server) -> None:
    points = sine_points(2000)
    with server.client() as c:
        response = c.post("/v1/jobs", json={"dataset": points, "hyperparameters": STEADY})
        job_id = response.json()["id"]
        progress = [event.json() for event in events(c, f"/v1/jobs/{job_id}/events") if event.event == "progress"]
        job = c.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    live = [(e["epochs_completed"], e["parameters"]) for e in progress if e["parameters"] is not None]
    assert len(live) >= 2 and live[-1] == (4000, job["result"]["parameters"])
    assert all(a[1] != b[1] for a, b in itertools.pairwise(live))  # the fit moves between events
    # Those of an epoch mid-training are what training that many epochs gives, exactly.
    epochs, parameters = live[(len(live) - 1) // 2]
    assert 0 < epochs < 4000
    config = config_from({**job["hyperparameters"], "epochs": epochs})
    assert model.train(points["x"], points["y"], config).parameters == parameters


def test_a_stream_resumed_from_last_event_id_loses_and_repeats_nothing(server: Server) -> None:
    with server.client() as c:
        job_id = submit(c, STEADY)
        first: list[float] = []
        last_id = None
        for event in events(c, f"/v1/jobs/{job_id}/events"):
            if event.event == "progress":
                first += event.json()["loss"]
                last_id = event.id
                if len(first) >= 500:
                    break  # the connection drops mid-training
        assert last_id is not None and int(last_id) == len(first)
        rest, _, statuses = follow(c, job_id, last_id)
        result = c.get(f"/v1/jobs/{job_id}/result").json()
        # On a busy machine the first event may already hold the whole history; a resume from
        # an epoch in the middle is then checked on the finished job.
        middle, _, _ = follow(c, job_id, "1234")
    assert first + rest == result["loss_history"] and statuses[-1] == "succeeded"
    assert middle == result["loss_history"][1234:]


def test_a_finished_jobs_stream_replays_its_history_and_ends(server: Server) -> None:
    with server.client() as c:
        job_id = submit(c, {**STEADY, "epochs": 50_000, "batch_size": 200}, n=400)
        wait_for(c, job_id, "succeeded")
        started = time.monotonic()
        loss, _, statuses = follow(c, job_id)
        result = c.get(f"/v1/jobs/{job_id}/result").json()
    assert loss == result["loss_history"] and statuses == ["succeeded"]
    assert time.monotonic() - started < 5


def test_events_of_an_unknown_or_anothers_job_are_404_before_the_stream(server: Server) -> None:
    with server.client() as c:
        job_id = submit(c, {"epochs": 5})
        wait_for(c, job_id, "succeeded")
    other = server.new_key("mallory")
    with server.client(other) as c:
        assert c.get(f"/v1/jobs/{job_id}/events").status_code == 404
        assert c.get("/v1/jobs/job_0123456789abcdef01234567/events").status_code == 404
        assert c.get("/v1/sweeps/sw_0123456789abcdef01234567/events").status_code == 404
    assert httpx.get(f"{server.url}/v1/jobs/{job_id}/events").status_code == 401
    with server.client() as c:
        bad = c.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "abc"})
        assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["detail"]


def test_a_sweeps_stream_counts_trials_and_ends_with_its_status(server: Server) -> None:
    body = {"dataset": sine_points(200), "hyperparameters": {"epochs": 300}, "grid": {"learning_rate": [0.1, 0.2]}}
    with server.client() as c:
        sweep_id = c.post("/v1/sweeps", json=body).json()["id"]
        seen = list(events(c, f"/v1/sweeps/{sweep_id}/events"))
    assert seen[-1].event == "status" and seen[-1].json()["status"] == "succeeded"
    last_progress = [e.json() for e in seen if e.event == "progress"][-1]
    assert last_progress["trials"]["succeeded"] == 2 and last_progress["epochs_completed"] == 600


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_clients_that_leave_and_a_serve_that_stops_leave_nothing_running(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = make_server()
    assert server.process is not None
    with server.client() as c:
        job_id = submit(c, {**STEADY, "epochs": 100_000})  # trains past this test
        wait_for(c, job_id, "running")
        before = threads_of(server.process.pid)
        clients = [server.client() for _ in range(20)]
        opened = [connect_sse(k, "GET", f"/v1/jobs/{job_id}/events") for k in clients]
        sources = [o.__enter__() for o in opened]
        for source in sources:  # each one live, past its first events
            next(source.iter_sse())
        for o, k in zip(opened, clients, strict=True):
            o.__exit__(None, None, None)
            k.close()
        time.sleep(1)
        assert threads_of(server.process.pid) <= before
        # A stream still open when serve is told to stop ends, and serve exits promptly.
        failed: list[BaseException] = []

        def hold() -> None:
            try:  # to its end: a clean end of the response, not a cut connection
                list(events(server.client(), f"/v1/jobs/{job_id}/events"))
            except BaseException as exc:
                failed.append(exc)

        held = threading.Thread(target=hold)
        held.start()
        time.sleep(1)
        stopping = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
        held.join(timeout=10)
    assert time.monotonic() - stopping < 10 and not held.is_alive() and not failed
    logs = "".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
    assert "timeout graceful shutdown exceeded" not in logs and "Application shutdown complete" in logs


def test_events_through_celery_rebuild_the_history_written_by_a_worker(celery_stack: Callable[..., Stack]) -> None:
    stack = celery_stack(workers=1)
    with stack.server.client() as c:
        job_id = submit(c, STEADY)
        loss, val, statuses = follow(c, job_id)
        result = c.get(f"/v1/jobs/{job_id}/result").json()
    assert statuses[-1] == "succeeded" and loss == result["loss_history"] and val == result["validation_loss_history"]
