"""Sweeps through Celery, all real processes: redis-server, `tinytrain worker`s, `tinytrain serve`
(on the test's PostgreSQL database), over HTTP."""

import time
from collections.abc import Callable
from typing import Any

import numpy as np

import model
from jobs.hyperparameters import config_from
from tests.api.test_sweeps import ANY, ENDED, assert_trials_equal_jobs, grid_body, run_rows, trials, wait_sweep
from tests.support.celery import Stack
from tests.support.data import sine_points

# Two trials of 20,000 points in batches of 1: a few seconds on two cores.
SECONDS: dict[str, Any] = {
    "dataset": sine_points(20_000, seed=5),
    "hyperparameters": {"learning_rate": 0.001, "batch_size": 1, "epochs": 1500, "dtype": "float64"},
    "grid": {"seed": [0, 1]},
}
# Six trials in two brackets (of 4, rungs 100, 300, 900; of 2, rungs 300, 900): each bracket's
# last survivor trains alone for seconds, long enough to lose its worker after a rung.
HALVING: dict[str, Any] = {
    "dataset": sine_points(20_000, seed=5),
    "hyperparameters": {"batch_size": 1, "epochs": 900, "validation_fraction": 0.2, "dtype": "float64"},
    "random": {
        "trials": 6,
        "seed": 3,
        "learning_rate": {"min": 0.001, "max": 0.03, "log": True},
        "seed_values": [0, 1],
    },
    "halving": {"min_epochs": 100, "reduction_factor": 3, "brackets": 2},
}


def test_a_sweep_through_celery_in_two_chunks_equals_its_trials_run_locally(
    celery_stack: Callable[..., Stack],
) -> None:
    stack = celery_stack(workers=2, sweep_chunk_trials="3")
    body = grid_body()
    with stack.server.client() as c:
        r = c.post("/v1/sweeps", json=body)
        assert r.status_code == 202, r.text
        sweep = wait_sweep(c, r.json()["id"], *ENDED)
        assert (sweep["status"], sweep["attempts"], sweep["device"]) == ("succeeded", 1, "cpu")
        assert sweep["trials"] == {
            "total": 6,
            "queued": 0,
            "running": 0,
            "succeeded": 3,
            "failed": 3,
            "cancelled": 0,
            "pruned": 0,
        }
        # Each trial equals a float64 job with its hyperparameters (through the same workers)...
        compared = assert_trials_equal_jobs(c, sweep)
    # ...and the engine run here, in this process, on the same points: bit for bit on the CPU.
    x, y = np.array(body["dataset"]["x"]), np.array(body["dataset"]["y"])
    for trial, _ in compared:
        alone = model.train(x, y, config_from(trial["hyperparameters"]))
        result = trial["result"]
        assert result["parameters"] == alone.parameters and result["loss_history"] == alone.loss_history
        assert (trial["status"] == "failed") == alone.diverged
    chunks = run_rows(
        stack.env["TINYTRAIN_DATABASE_URL"],
        "SELECT lo, hi, status, attempts FROM sweep_chunks WHERE sweep_id = :s ORDER BY lo",
        s=sweep["id"],
    )
    assert [tuple(row) for row in chunks] == [(0, 3, "succeeded", 1), (3, 6, "succeeded", 1)]


def test_a_killed_worker_mid_sweep_is_replaced_and_every_trial_ends_once(
    celery_stack: Callable[..., Stack],
) -> None:
    stack = celery_stack(workers=1, lease_seconds="2")
    with stack.server.client() as c:
        sweep_id = c.post("/v1/sweeps", json=SECONDS).json()["id"]
        wait_sweep(c, sweep_id, "running", epochs_completed=2)
        stack.workers[0].kill()
        # No worker until the lease expired and the reaper queued the chunk again: its trials wait too.
        lost = wait_sweep(c, sweep_id, "running", timeout=30, queued=2)
        assert lost["trials"]["running"] == 0 and lost["attempts"] == 1
        stack.add_worker()
        sweep = wait_sweep(c, sweep_id, *ENDED, timeout=120)
        assert (sweep["status"], sweep["error"], sweep["attempts"]) == ("succeeded", None, 2)
        assert sweep["trials"]["succeeded"] == 2 and sweep["progress"] == {"epochs_completed": 3000, "epochs": 3000}
        logs = "".join(p.read_text() for p in stack.workdir.glob("worker-*.log"))
        assert logs.count("succeeded in") == 1  # the chunk's task ended once: in the new worker

        fresh_id = c.post("/v1/sweeps", json=SECONDS).json()["id"]
        fresh = wait_sweep(c, fresh_id, *ENDED, timeout=120)
        assert (fresh["status"], fresh["attempts"]) == ("succeeded", 1)
        rerun, again = (
            [c.get(f"/v1/sweeps/{s}/trials/{t['index']}").json() for t in trials(c, s)] for s in (sweep_id, fresh_id)
        )
    assert [t["index"] for t in rerun] == [0, 1]
    for one, other in zip(rerun, again, strict=True):
        assert one["status"] == "succeeded" and one["result"]["epochs_completed"] == 1500
        assert one["result"]["parameters"] == other["result"]["parameters"]
        assert one["result"]["loss_history"] == other["result"]["loss_history"]
    url = stack.env["TINYTRAIN_DATABASE_URL"]
    stored = run_rows(url, "SELECT trial FROM histories WHERE run_id = :s ORDER BY trial", s=sweep_id)
    assert [row[0] for row in stored] == [0, 1]
    assert [row[0] for row in run_rows(url, "SELECT attempts FROM sweep_chunks WHERE sweep_id = :s", s=sweep_id)] == [2]


def test_a_halving_sweep_whose_worker_is_killed_past_a_rung_ends_as_an_uninterrupted_one(
    celery_stack: Callable[..., Stack],
) -> None:
    stack = celery_stack(workers=1, lease_seconds="2")
    url = stack.env["TINYTRAIN_DATABASE_URL"]
    with stack.server.client() as c:
        sweep_id = c.post("/v1/sweeps", json=HALVING).json()["id"]
        # A chunk (a bracket) past its first rung: a trial has gone on beyond the bracket's first
        # rung, so the rung ranked its trials and the survivors train on.
        past_rung = (
            "SELECT lo FROM sweep_chunks WHERE sweep_id = :s AND status = 'running' AND epochs_completed > (hi - lo) * "
            "CASE lo WHEN 0 THEN 100 ELSE 300 END"
        )
        deadline = time.monotonic() + 60
        while not (killed := run_rows(url, past_rung, s=sweep_id)):
            assert time.monotonic() < deadline, "no chunk passed its first rung"
            time.sleep(0.02)
        stack.workers[0].kill()
        mid = c.get(f"/v1/sweeps/{sweep_id}").json()
        assert mid["status"] == "running" and mid["trials"]["pruned"] == 0  # a chunk's trials end with it
        stack.add_worker()
        sweep = wait_sweep(c, sweep_id, *ENDED, timeout=120)
        fresh_id = c.post("/v1/sweeps", json=HALVING).json()["id"]
        fresh = wait_sweep(c, fresh_id, *ENDED, timeout=120)
        assert (sweep["status"], sweep["error"], sweep["attempts"]) == ("succeeded", None, 2)
        assert (fresh["status"], fresh["attempts"]) == ("succeeded", 1)
        assert sweep["trials"] == fresh["trials"] and sweep["trials"]["pruned"] == 4
        assert sweep["progress"] == fresh["progress"] and sweep["best"] == fresh["best"]
        rerun, again = (
            [c.get(f"/v1/sweeps/{s}/trials/{t['index']}").json() for t in trials(c, s)] for s in (sweep_id, fresh_id)
        )
    # Every trial as the uninterrupted sweep ended it: status, bracket, rung, epochs, parameters and histories.
    assert [t["bracket"] for t in rerun] == [0, 0, 0, 0, 1, 1]
    assert rerun == [{**t, "result": {**t["result"], "training_seconds": ANY}} for t in again]
    chunks = run_rows(url, "SELECT lo, attempts FROM sweep_chunks WHERE sweep_id = :s ORDER BY lo", s=sweep_id)
    lost = killed[0][0]
    assert [tuple(row) for row in chunks] == [(lo, 2 if lo == lost else 1) for lo in (0, 4)]
