"""The service end to end, against a real `tinytrain serve` process over HTTP."""

import os
import signal
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest

from tests.reference import NAMES, plain_train
from tests.support.client import assert_all_finite, wait_for
from tests.support.data import INIT, PLAIN_LOOP_HP, SECONDS_OF_TRAINING, sine_points
from tests.support.server import Server, server_env

LONG = {"learning_rate": 0.01, "batch_size": 1, "epochs": 100000}  # minutes of training on 20,000 points


def test_readme_flow_trains_a_job_and_returns_seven_parameters(make_server: Callable[..., Server]) -> None:
    server = make_server()
    with server.client() as c:
        ds = c.post(
            "/v1/datasets", content="x,y\n-2,-0.9\n-1,-0.8\n0,0\n1,0.8\n2,0.9\n", headers={"Content-Type": "text/csv"}
        )
        assert ds.status_code == 201 and ds.json()["n_points"] == 5
        hp = {"learning_rate": 0.5, "batch_size": 2, "epochs": 200}
        submitted = c.post("/v1/jobs", json={"dataset_id": ds.json()["id"], "hyperparameters": hp})
        assert submitted.status_code == 202
        job_id = submitted.json()["id"]
        assert submitted.headers["Location"] == f"/v1/jobs/{job_id}"
        assert submitted.json()["hyperparameters"]["seed"] == 0  # all resolved
        job = wait_for(c, job_id, "succeeded")
        assert job["attempts"] == 1 and job["device"] == "cpu" and job["progress"]["epochs_completed"] == 200
        result = c.get(f"/v1/jobs/{job_id}/result").json()
        assert list(result["parameters"]) == list(NAMES)
        assert len(result["loss_history"]) == 200 and result["final_loss"] == result["loss_history"][-1]
        assert "loss_history" not in job["result"]  # a job read carries the scalars only
        sliced = c.get(f"/v1/jobs/{job_id}/result", params={"start": 10, "stop": 20}).json()
        assert sliced["epochs"] == list(range(11, 21)) and sliced["loss_history"] == result["loss_history"][10:20]
        few = c.get(f"/v1/jobs/{job_id}/result", params={"max_points": 5}).json()
        assert few["epochs"][0] == 1 and few["epochs"][-1] == 200 and len(few["loss_history"]) == 5
        assert few["loss_history"][-1] == result["final_loss"]
        beyond = c.get(f"/v1/jobs/{job_id}/result", params={"start": 2**31, "stop": 5}).json()
        assert beyond["loss_history"] == [] and beyond["epochs"] == []  # a slice as Python's, never a 500
        assert result["final_loss"] < result["initial_loss"]
        y = c.post(f"/v1/jobs/{job_id}/predict", json={"x": [-2.0, 2.0]}).json()["y"]
        assert y[0] < 0 < y[1]
        listed = c.get("/v1/jobs", params={"status": "succeeded"}).json()
        assert [j["id"] for j in listed["items"]] == [job_id] and "result" not in listed["items"][0]


def test_float64_job_matches_the_plain_loop(make_server: Callable[..., Server]) -> None:
    server = make_server()
    points = sine_points(203)
    hp = PLAIN_LOOP_HP
    with server.client() as c:
        job_id = c.post("/v1/jobs", json={"dataset": points, "hyperparameters": hp}).json()["id"]
        wait_for(c, job_id, "succeeded")
        result = c.get(f"/v1/jobs/{job_id}/result").json()
    params, history = plain_train(points["x"], points["y"], INIT, 0.3, 32, 5)
    for k in NAMES:
        assert result["parameters"][k] == pytest.approx(params[k], rel=1e-9, abs=1e-12)
    assert result["loss_history"] == pytest.approx(history, rel=1e-9)


def test_owners_see_only_their_own_objects(make_server: Callable[..., Server]) -> None:
    server = make_server()
    other = server.new_key("mallory")
    with server.client() as ann, server.client(other) as mal:
        ds = ann.post("/v1/datasets", json={"x": [0.0, 1.0], "y": [1.0, 0.0]}).json()["id"]
        job = ann.post("/v1/jobs", json={"dataset_id": ds, "hyperparameters": {"batch_size": 1, "epochs": 2}}).json()
        for method, path in [
            ("GET", f"/v1/datasets/{ds}"),
            ("DELETE", f"/v1/datasets/{ds}"),
            ("GET", f"/v1/jobs/{job['id']}"),
            ("GET", f"/v1/jobs/{job['id']}/result"),
            ("POST", f"/v1/jobs/{job['id']}/cancel"),
        ]:
            assert mal.request(method, path).status_code == 404, path
        assert mal.post(f"/v1/jobs/{job['id']}/predict", json={"x": [1.0]}).status_code == 404
        assert mal.post("/v1/jobs", json={"dataset_id": ds}).status_code == 404
        assert mal.get("/v1/jobs").json()["items"] == [] and mal.get("/v1/datasets").json()["items"] == []
        assert [d["id"] for d in ann.get("/v1/datasets").json()["items"]] == [ds]


def test_cancel_a_queued_and_a_running_job(make_server: Callable[..., Server]) -> None:
    server = make_server(local_workers="1")
    with server.client() as c:
        running = c.post("/v1/jobs", json={"dataset": sine_points(20000), "hyperparameters": LONG}).json()["id"]
        wait_for(c, running, "running", epochs_completed=1)
        queued = c.post("/v1/jobs", json={"dataset": sine_points(10), "hyperparameters": {"batch_size": 2}}).json()
        assert queued["status"] == "queued"  # the only worker is busy
        cancelled = c.post(f"/v1/jobs/{queued['id']}/cancel")
        assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
        asked = time.monotonic()
        assert c.post(f"/v1/jobs/{running}/cancel").status_code == 202
        job = wait_for(c, running, "cancelled", timeout=5)
        assert time.monotonic() - asked < 1.0
        partial = job["result"]
        assert partial is not None and 1 <= partial["epochs_completed"] < 100000 and "loss_history" not in partial
        assert c.get(f"/v1/jobs/{running}/result").status_code == 409
        assert c.post(f"/v1/jobs/{running}/cancel").status_code == 409
        time.sleep(0.5)  # the worker is free again: the cancelled queued job must not have started
        never = c.get(f"/v1/jobs/{queued['id']}").json()
        assert (never["status"], never["attempts"], never["started_at"]) == ("cancelled", 0, None)


def test_a_diverging_job_fails_with_no_nan_anywhere(make_server: Callable[..., Server]) -> None:
    server = make_server()
    points = sine_points(200)
    points["y"] = [v * 1000 for v in points["y"]]
    with server.client() as c:
        r = c.post("/v1/jobs", json={"dataset": points, "hyperparameters": {"learning_rate": 1e6, "epochs": 50}})
        job = wait_for(c, r.json()["id"], "failed")
        assert job["error"]["code"] == "diverged"
        for path in (f"/v1/jobs/{job['id']}", "/v1/jobs"):
            assert_all_finite(c.get(path).text)
        assert job["result"] is not None and job["result"]["epochs_completed"] < 50


def test_max_runtime_seconds_fails_with_timeout_and_keeps_the_partial_result(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    with server.client() as c:
        r = c.post(
            "/v1/jobs", json={"dataset": sine_points(20000), "hyperparameters": LONG, "max_runtime_seconds": 0.5}
        )
        job = wait_for(c, r.json()["id"], "failed", timeout=10)
        assert job["error"]["code"] == "timeout" and job["result"]["epochs_completed"] >= 1


def test_serve_killed_mid_job_and_restarted_finishes_the_job(make_server: Callable[..., Server]) -> None:
    server = make_server(lease_seconds="2", local_workers="1")
    with server.client() as c:
        body = {"dataset": sine_points(200_000), "hyperparameters": SECONDS_OF_TRAINING}
        job_id = c.post("/v1/jobs", json=body).json()["id"]
        wait_for(c, job_id, "running", epochs_completed=1)
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    server.start()
    with server.client() as c:
        job = wait_for(c, job_id, "succeeded", timeout=120)
        assert job["attempts"] == 2 and job["result"]["epochs_completed"] == 600


def test_serve_with_two_processes_shares_one_database(tmp_path: Path) -> None:
    server = Server(tmp_path, server_env(tmp_path), args=("--processes", "2"))
    server.start()
    try:
        with server.client() as c:
            ids = [
                c.post("/v1/jobs", json={"dataset": sine_points(50), "hyperparameters": {"epochs": 3}}).json()["id"]
                for _ in range(6)
            ]
            assert all(wait_for(c, job_id, "succeeded")["attempts"] == 1 for job_id in ids)
            assert {j["id"] for j in c.get("/v1/jobs").json()["items"]} == set(ids)
    finally:
        server.stop()


def test_healthz_and_readyz(make_server: Callable[..., Server]) -> None:
    server = make_server()
    with server.client() as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").json() == {"status": "ready"}


def test_a_submit_waits_out_a_held_writer_lock_in_a_thread_while_other_requests_answer(
    make_server: Callable[..., Server],
) -> None:
    """A submit waits for SQLite's writer lock in a thread: while another process's write holds
    it, the event loop goes on answering."""
    server = make_server()
    tiny = {"dataset": sine_points(50), "hyperparameters": {"epochs": 3}}
    with server.client() as c, ThreadPoolExecutor(1) as pool:
        first = c.post("/v1/jobs", json=tiny, headers={"Prefer": "wait=30"}).json()
        with closing(sqlite3.connect(server.workdir / "tinytrain.db", isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # SQLite's writer lock, as a long write holds it
            started = time.monotonic()
            submitting = pool.submit(c.post, "/v1/jobs", json=tiny, headers={"Prefer": "wait=30"})
            time.sleep(0.2)
            for _ in range(5):  # the loop answers meanwhile
                asked = time.monotonic()
                assert c.get(f"/v1/jobs/{first['id']}").json()["status"] == "succeeded"
                assert time.monotonic() - asked < 0.5
            assert not submitting.done()
            time.sleep(1)
        second = submitting.result()
        assert time.monotonic() - started >= 1.2  # it did wait for the lock
        assert second.status_code == 200 and second.json()["status"] == "succeeded"
        listed = {j["id"] for j in c.get("/v1/jobs").json()["items"]}
        assert listed == {first["id"], second.json()["id"]}  # one job for one submit
