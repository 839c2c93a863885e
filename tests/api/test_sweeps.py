"""Sweeps end to end: a real `tinytrain serve` (local executor) over HTTP, on SQLite and PostgreSQL.

A trial is the job it would be alone: every test that runs trials compares them with jobs
submitted with each trial's resolved hyperparameters on the sweep's dataset.
"""

import itertools
import json
import secrets
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support.client import assert_all_finite, wait_for
from tests.support.data import sine_points
from tests.support.databases import fresh_database
from tests.support.server import Server, serving

ENDED = ("succeeded", "failed", "cancelled")
# The module's servers: small limits to provoke (100 trials; 2e9 point-epochs, one trial's 1e9 fits).
LIMITS = {"max_trials": "100", "max_work": "2000000000"}
LONG = {"learning_rate": 0.001, "batch_size": 1, "epochs": 100_000}  # minutes of training on 5,000 points


class _Any:
    def __eq__(self, other: object) -> bool:
        return True


ANY: Any = _Any()  # equal to anything: training_seconds, which differ between two runs


def grid_body() -> dict[str, Any]:
    """Six float64 trials of 40 points: batch sizes 1, 7 (a short last batch) and 40, at a
    learning rate that trains and at one that diverges (x reaches 5)."""
    points = sine_points(40, seed=1)
    points["x"] = [v * 5 / 3 for v in points["x"]]
    return {
        "dataset": points,
        "hyperparameters": {"epochs": 30, "dtype": "float64", "seed": 3},
        "grid": {"learning_rate": [0.3, 1e6], "batch_size": [1, 7, 40]},
    }


def wait_sweep(
    client: httpx.Client, sweep_id: str, *statuses: str, timeout: float = 60, **progress: int
) -> dict[str, Any]:
    """Poll a sweep until its status is one of statuses (and its progress or trial counts reached
    what is given: epochs_completed=2, queued=2)."""
    deadline = time.monotonic() + timeout
    while True:
        sweep: dict[str, Any] = client.get(f"/v1/sweeps/{sweep_id}").json()
        reached = all({**sweep["progress"], **sweep["trials"]}[k] >= v for k, v in progress.items())
        if sweep["status"] in statuses and reached:
            return sweep
        assert time.monotonic() < deadline, f"sweep stuck: {sweep['status']} {sweep['trials']} {sweep['progress']}"
        time.sleep(0.02)


def pages(client: httpx.Client, path: str, limit: int, **params: str) -> list[dict[str, Any]]:
    """Every item of a paged list, following next_cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = client.get(path, params={"limit": limit, **params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


def trials(client: httpx.Client, sweep_id: str, order_by: str = "index", limit: int = 100) -> list[dict[str, Any]]:
    return pages(client, f"/v1/sweeps/{sweep_id}/trials", limit, order_by=order_by)


def code(run: dict[str, Any]) -> str | None:
    return run["error"]["code"] if run["error"] else None


def assert_same_result(trial: dict[str, Any], job: dict[str, Any], *, exact: bool) -> None:
    """A trial's result and a job's: equal within 1e-9 (float64); exact: bit for bit (the CPU engine)."""
    assert trial["parameters"] == pytest.approx(job["parameters"], rel=1e-9, abs=1e-12)
    for key in ("initial_loss", "final_loss"):
        assert (trial[key] is None) == (job[key] is None), key
        if job[key] is not None:
            assert trial[key] == pytest.approx(job[key], rel=1e-9), key
    assert (trial["epochs_completed"], trial["stopped_early"]) == (job["epochs_completed"], job["stopped_early"])
    for history in ("loss_history", "validation_loss_history"):
        if job.get(history) is not None:
            assert trial[history] == pytest.approx(job[history], rel=1e-9), history
        elif history in job:
            assert trial[history] is None, history
    if exact:
        kept = {k: v for k, v in job.items() if k != "training_seconds"}
        assert {k: trial[k] for k in kept} == kept


def assert_trials_equal_jobs(client: httpx.Client, sweep: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Submit a job with each trial's resolved hyperparameters on the sweep's dataset: it ends as
    its trial did, with the same result. Returns (the trial with its whole result, the job's id)."""
    listed = trials(client, sweep["id"])
    job_ids = []
    for trial in listed:
        r = client.post(
            "/v1/jobs", json={"dataset_id": sweep["dataset_id"], "hyperparameters": trial["hyperparameters"]}
        )
        assert r.status_code == 202, r.text
        job_ids.append(r.json()["id"])
    out = []
    for trial, job_id in zip(listed, job_ids, strict=True):
        job = wait_for(client, job_id, *ENDED)
        assert job["hyperparameters"] == trial["hyperparameters"]
        assert (trial["status"], code(trial)) == (job["status"], code(job)), trial["index"]
        whole = client.get(f"/v1/sweeps/{sweep['id']}/trials/{trial['index']}")
        assert whole.status_code == 200, whole.text
        assert_all_finite(whole.text)
        result = whole.json()["result"]
        assert len(result["loss_history"]) == result["epochs_completed"]
        # A failed job has no /result: its row keeps the scalars (the last finite parameters).
        expected = client.get(f"/v1/jobs/{job_id}/result").json() if job["status"] == "succeeded" else job["result"]
        assert_same_result(result, expected, exact=job["device"] == sweep["device"] == "cpu")
        out.append((whole.json(), job_id))
    return out


def assert_trials_equal_jobs_of_their_epochs(
    client: httpx.Client, sweep: dict[str, Any], listed: list[dict[str, Any]]
) -> None:
    """Each trial listed equals the job with its hyperparameters for the epochs it trained (a
    pruned trial's: its rung), on the sweep's dataset."""
    jobs = [
        client.post(
            "/v1/jobs",
            json={
                "dataset_id": sweep["dataset_id"],
                "hyperparameters": {**t["hyperparameters"], "epochs": max(1, t["epochs_completed"])},
            },
        ).json()["id"]
        for t in listed
    ]
    for t, job_id in zip(listed, jobs, strict=True):
        job = wait_for(client, job_id, *ENDED)
        whole = client.get(f"/v1/sweeps/{sweep['id']}/trials/{t['index']}").json()["result"]
        expected = client.get(f"/v1/jobs/{job_id}/result").json() if job["status"] == "succeeded" else job["result"]
        assert_same_result(whole, expected, exact=job["device"] == sweep["device"] == "cpu")


def run_rows(database_url: str, query: str, **params: str) -> list[Any]:
    """Rows of a query on the service's database (what the API does not show: chunks, histories)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(query), params))
    finally:
        engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per database for the module's read-mostly tests, with LIMITS."""
    tmp = tmp_path_factory.mktemp("sweeps")
    with fresh_database(request.param, tmp) as url, serving(tmp, database_url=url, **LIMITS) as started:
        yield started


@pytest.fixture(scope="module")
def stranger(server: Server) -> Iterator[httpx.Client]:
    """A client of an owner of its own, who has nothing stored yet."""
    with server.client(server.new_key(f"stranger-{secrets.token_hex(4)}")) as c:
        yield c


def test_grid_sweep_trials_equal_jobs(server: Server) -> None:
    body = grid_body()
    with server.client() as c:
        r = c.post("/v1/sweeps", json=body)
        assert r.status_code == 202, r.text
        sweep_id = r.json()["id"]
        assert r.headers["Location"] == f"/v1/sweeps/{sweep_id}"
        assert r.json()["trials"] == {
            "total": 6,
            "queued": 6,
            "running": 0,
            "succeeded": 0,
            "failed": 0,
            "cancelled": 0,
            "pruned": 0,
        }
        sweep = wait_sweep(c, sweep_id, *ENDED)
        assert_all_finite(c.get(f"/v1/sweeps/{sweep_id}").text)
        # A diverged trial is a failed trial; the sweep goes on and succeeds.
        assert (sweep["status"], sweep["error"], sweep["attempts"], sweep["device"]) == ("succeeded", None, 1, "cpu")
        assert sweep["objective"] == "final_loss"

        listed = trials(c, sweep_id)
        assert_all_finite(c.get(f"/v1/sweeps/{sweep_id}/trials").text)
        # Grid order: the Cartesian product, keys as written, the last varying fastest.
        base = sweep["hyperparameters"]
        assert base["epochs"] == 30 and base["dtype"] == "float64" and base["seed"] == 3 and base["shuffle"] is True
        combos = itertools.product(*body["grid"].values())
        expected = [{**base, "learning_rate": lr, "batch_size": bs} for lr, bs in combos]
        assert [t["index"] for t in listed] == list(range(6))
        assert [t["hyperparameters"] for t in listed] == expected
        assert [t["hyperparameters"]["batch_size"] for t in listed[:4]] == [1, 7, 40, 1]

        trained = [t for t in listed if t["hyperparameters"]["learning_rate"] == 0.3]
        diverged = [t for t in listed if t["hyperparameters"]["learning_rate"] == 1e6]
        assert all(t["status"] == "succeeded" and t["error"] is None for t in trained)
        assert all(
            t["objective"] == t["result"]["final_loss"] and t["result"]["epochs_completed"] == 30 for t in trained
        )
        for t in diverged:
            assert (t["status"], code(t), t["objective"]) == ("failed", "diverged", None)
            assert t["result"] is not None and t["result"]["epochs_completed"] < 30
            assert all(isinstance(v, float) for v in t["result"]["parameters"].values())  # finite: assert_all_finite
        assert sweep["trials"] == {
            "total": 6,
            "queued": 0,
            "running": 0,
            "succeeded": 3,
            "failed": 3,
            "cancelled": 0,
            "pruned": 0,
        }
        assert sweep["progress"] == {
            "epochs_completed": sum(t["result"]["epochs_completed"] for t in listed),
            "epochs": 180,
        }

        best = min(trained, key=lambda t: t["objective"])
        assert sweep["best"] == {
            "index": best["index"],
            "hyperparameters": best["hyperparameters"],
            "objective": best["result"]["final_loss"],
            "parameters": best["result"]["parameters"],
        }
        # The leaderboard: smallest objective first, the failed trials (no objective) last.
        board = trials(c, sweep_id, order_by="objective")
        assert [t["index"] for t in board] == [t["index"] for t in sorted(trained, key=lambda t: t["objective"])] + [
            t["index"] for t in diverged
        ]
        for order_by in ("objective", "index"):  # pages of 2 and of 4 cover every trial once, in order
            whole = [t["index"] for t in trials(c, sweep_id, order_by=order_by)]
            assert [t["index"] for t in trials(c, sweep_id, order_by=order_by, limit=2)] == whole
            assert [t["index"] for t in trials(c, sweep_id, order_by=order_by, limit=4)] == whole
            assert sorted(whole) == list(range(6))

        compared = assert_trials_equal_jobs(c, sweep)

        trial, job_id = compared[best["index"]]
        path = f"/v1/sweeps/{sweep_id}/trials/{best['index']}"
        for params in ({"start": 5, "stop": 10}, {"max_points": 4}, {"start": 28}):
            sliced = c.get(path, params=params).json()["result"]
            assert sliced == {**c.get(f"/v1/jobs/{job_id}/result", params=params).json(), "training_seconds": ANY}
            assert sliced["loss_history"] == [trial["result"]["loss_history"][e - 1] for e in sliced["epochs"]]
        assert c.get(path, params={"start": 5, "stop": 10}).json()["result"]["epochs"] == [6, 7, 8, 9, 10]
        x = {"x": [-5.0, 0.0, 2.5]}
        predicted = c.post(f"{path}/predict", json=x)
        assert predicted.status_code == 200 and predicted.json() == c.post(f"/v1/jobs/{job_id}/predict", json=x).json()
        failed = c.post(f"/v1/sweeps/{sweep_id}/trials/{diverged[0]['index']}/predict", json=x)
        assert failed.status_code == 409
        assert c.get(f"/v1/sweeps/{sweep_id}/trials/6").status_code == 404
        assert [s["id"] for s in c.get("/v1/sweeps").json()["items"]][0] == sweep_id


def test_a_split_sweep_ranks_by_validation_loss_and_its_trials_equal_jobs(server: Server) -> None:
    body: dict[str, Any] = {
        "dataset": sine_points(60, seed=4),
        "hyperparameters": {"epochs": 40, "batch_size": 8, "validation_fraction": 0.25, "dtype": "float64"},
        "grid": {"learning_rate": [0.2, 1.5], "early_stopping": [None, {"patience": 2, "min_delta": 0.001}]},
    }
    with server.client() as c:
        r = c.post("/v1/sweeps", json=body)
        assert r.status_code == 202 and r.json()["objective"] == "final_validation_loss"  # the default with a split
        sweep = wait_sweep(c, r.json()["id"], *ENDED)
        assert sweep["status"] == "succeeded"
        compared = assert_trials_equal_jobs(c, sweep)
        whole = [trial for trial, _ in compared]
        assert all(t["objective"] == t["result"]["validation_loss_history"][-1] for t in whole)
        assert any(t["result"]["stopped_early"] for t in whole)
        assert [t["hyperparameters"]["early_stopping"] for t in whole[:2]] == [
            None,
            {"patience": 2, "min_delta": 0.001},
        ]
        board = [t["index"] for t in trials(c, sweep["id"], order_by="objective")]
        assert board == [t["index"] for t in sorted(whole, key=lambda t: t["objective"])]
        assert sweep["best"]["index"] == board[0]

        chosen = c.post("/v1/sweeps", json={**body, "objective": "final_loss"}).json()
        assert chosen["objective"] == "final_loss"
        wait_sweep(c, chosen["id"], "succeeded")
        again = trials(c, chosen["id"])
        assert [t["objective"] for t in again] == [t["result"]["final_loss"] for t in whole]


def test_halving_prunes_at_rungs_and_every_trial_equals_the_job_with_its_rung(server: Server) -> None:
    space = {"learning_rate": {"min": 0.01, "max": 3.0, "log": True}, "batch_size": {"min": 4, "max": 32}}
    body: dict[str, Any] = {
        "dataset": sine_points(80, seed=6),
        "hyperparameters": {"epochs": 18, "validation_fraction": 0.2, "dtype": "float64"},
        "random": {"trials": 20, "seed": 3, **space, "seed_values": [0, 1, 2]},
        "halving": {"min_epochs": 2, "reduction_factor": 3, "brackets": 2},
    }
    with server.client() as c:
        r = c.post("/v1/sweeps", json=body)
        assert r.status_code == 202, r.text
        sweep = wait_sweep(c, r.json()["id"], *ENDED)
        assert sweep["status"] == "succeeded" and sweep["halving"] == {**body["halving"]}
        counts = sweep["trials"]
        assert counts["pruned"] > 10 and counts["succeeded"] + counts["failed"] + counts["pruned"] == 20
        assert sweep["progress"]["epochs_completed"] == sweep["progress"]["epochs"] < 20 * 18 / 2
        listed = trials(c, sweep["id"])
        # Bracket 0 (rungs 2, 6, 18) gets more trials than bracket 1 (rungs 6, 18), as Hyperband deals them.
        assert [t["bracket"] for t in listed] == sorted(t["bracket"] for t in listed)
        assert sum(t["bracket"] == 0 for t in listed) > sum(t["bracket"] == 1 for t in listed) > 0
        for t in listed:
            assert t["rung"] == t["epochs_completed"] or t["status"] == "failed"
            assert (t["status"] == "pruned") == (t["epochs_completed"] < 18 and t["status"] != "failed")
        ranked = [t for t in trials(c, sweep["id"], order_by="objective") if t["objective"] is not None]
        assert {t["status"] for t in ranked} == {"succeeded"} and sweep["best"]["index"] == ranked[0]["index"]
        assert_trials_equal_jobs_of_their_epochs(c, sweep, listed)

        again = wait_sweep(c, c.post("/v1/sweeps", json=body).json()["id"], *ENDED)
        assert [(t["status"], t["result"]) for t in trials(c, again["id"])] == [
            (t["status"], {**t["result"], "training_seconds": ANY}) for t in listed
        ]


def test_max_runtime_seconds_fails_the_sweep_with_timeout_keeping_partial_results(server: Server) -> None:
    body = {"dataset": sine_points(5000), "hyperparameters": LONG, "grid": {"seed": [0, 1]}, "max_runtime_seconds": 0.5}
    with server.client() as c:
        sweep = wait_sweep(c, c.post("/v1/sweeps", json=body).json()["id"], *ENDED, timeout=10)
        assert (sweep["status"], code(sweep)) == ("failed", "timeout")
        assert sweep["trials"]["failed"] == 2 and sweep["best"] is None
        for t in trials(c, sweep["id"]):
            assert (t["status"], code(t), t["objective"]) == ("failed", "timeout", None)
            assert 1 <= t["result"]["epochs_completed"] < LONG["epochs"]


def test_a_sweep_in_chunks_of_two_runs_every_trial_once_with_the_same_results(
    make_server: Callable[..., Server], database_url: str
) -> None:
    server = make_server(database_url=database_url, sweep_chunk_trials="2")
    with server.client() as c:
        r = c.post("/v1/sweeps", json=grid_body())
        assert r.status_code == 202, r.text
        sweep = wait_sweep(c, r.json()["id"], *ENDED)
        assert (sweep["status"], sweep["attempts"]) == ("succeeded", 1)
        assert sweep["trials"] == {
            "total": 6,
            "queued": 0,
            "running": 0,
            "succeeded": 3,
            "failed": 3,
            "cancelled": 0,
            "pruned": 0,
        }
        compared = assert_trials_equal_jobs(c, sweep)
    assert [t["index"] for t, _ in compared] == list(range(6))
    chunks = run_rows(
        database_url, "SELECT lo, hi, status, attempts FROM sweep_chunks WHERE sweep_id = :s ORDER BY lo", s=sweep["id"]
    )
    assert [tuple(row) for row in chunks] == [(0, 2, "succeeded", 1), (2, 4, "succeeded", 1), (4, 6, "succeeded", 1)]
    stored = run_rows(database_url, "SELECT trial FROM histories WHERE run_id = :s ORDER BY trial", s=sweep["id"])
    assert [row[0] for row in stored] == list(range(6))


def test_chunks_ending_at_once_end_their_sweep(make_server: Callable[..., Server], database_url: str) -> None:
    # Two processes finishing the two one-trial chunks of a sweep at the same moment: under
    # PostgreSQL's READ COMMITTED each saw the other still running, and the sweep could stay
    # running for ever, until settle_sweep locked the sweep's row.
    server = make_server(database_url=database_url, sweep_chunk_trials="1")
    with server.client() as c:
        ids = [
            c.post("/v1/sweeps", json={**sweep_with(), "grid": {"seed": [k, k + 1000]}}).json()["id"] for k in range(40)
        ]
        done = [wait_sweep(c, sweep_id, *ENDED, timeout=30) for sweep_id in ids]
    assert [s["status"] for s in done] == ["succeeded"] * 40
    assert all(s["trials"]["succeeded"] == 2 for s in done)


def test_random_sweep_is_reproducible_and_draws_within_its_ranges(server: Server) -> None:
    spec: dict[str, Any] = {
        "trials": 60,
        "seed": 11,
        "learning_rate": {"min": 1e-4, "max": 1.0, "log": True},
        "batch_size": {"min": 1, "max": 4},
        "seed_values": [3, 5, 11],
        "early_stopping_values": [None, {"patience": 2}],
    }
    body = {"dataset": sine_points(10, seed=2), "hyperparameters": {"epochs": 3}, "random": spec}
    with server.client() as c:
        ids = [
            c.post("/v1/sweeps", json=b).json()["id"] for b in (body, body, {**body, "random": {**spec, "seed": 12}})
        ]
        done = [wait_sweep(c, sweep_id, *ENDED) for sweep_id in ids]
        assert [s["status"] for s in done] == ["succeeded"] * 3
        first, again, other = (trials(c, sweep_id) for sweep_id in ids)
    drawn = [t["hyperparameters"] for t in first]
    assert drawn == [t["hyperparameters"] for t in again]  # the same request, the same trials
    assert [t["result"] for t in first] == [{**t["result"], "training_seconds": ANY} for t in again]
    assert drawn != [t["hyperparameters"] for t in other]
    rates = [hp["learning_rate"] for hp in drawn]
    assert all(1e-4 <= lr <= 1.0 for lr in rates)
    # Log-uniform: half of the draws below 1e-2 (uniform would put one in a hundred there).
    assert 0.3 < sum(lr < 1e-2 for lr in rates) / len(rates) < 0.7
    assert {hp["batch_size"] for hp in drawn} == {1, 2, 3, 4}  # integers, both ends included
    assert {hp["seed"] for hp in drawn} == {3, 5, 11}
    # Resolved as a job's: the early_stopping drawn has its min_delta.
    assert {json.dumps(hp["early_stopping"]) for hp in drawn} == {"null", '{"patience": 2, "min_delta": 0.0}'}
    assert all(hp["epochs"] == 3 and hp["dtype"] == "float32" for hp in drawn)


def test_cancel_stops_every_trial_keeping_partial_results(
    make_server: Callable[..., Server], database_url: str
) -> None:
    # One process, chunks of two: trials 0 and 1 train, 2 and 3 wait in the second chunk.
    server = make_server(database_url=database_url, local_workers="1", sweep_chunk_trials="2")
    with server.client() as c:
        body = {"dataset": sine_points(5000), "hyperparameters": LONG, "grid": {"seed": [0, 1, 2, 3]}}
        sweep_id = c.post("/v1/sweeps", json=body).json()["id"]
        running = wait_sweep(c, sweep_id, "running", epochs_completed=2)
        assert running["trials"] == {
            "total": 4,
            "queued": 2,
            "running": 2,
            "succeeded": 0,
            "failed": 0,
            "cancelled": 0,
            "pruned": 0,
        }
        assert c.delete(f"/v1/sweeps/{sweep_id}").status_code == 409
        asked = time.monotonic()
        cancelled = c.post(f"/v1/sweeps/{sweep_id}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        sweep = wait_sweep(c, sweep_id, *ENDED, timeout=5)
        took = time.monotonic() - asked
        assert sweep["status"] == "cancelled" and took < 1.0, (sweep["status"], took)
        assert sweep["trials"] == {
            "total": 4,
            "queued": 0,
            "running": 0,
            "succeeded": 0,
            "failed": 0,
            "cancelled": 4,
            "pruned": 0,
        }
        assert c.post(f"/v1/sweeps/{sweep_id}/cancel").status_code == 409
        time.sleep(0.5)  # the process is free again: the second chunk must not have started
        listed = trials(c, sweep_id)
        assert [(t["status"], t["error"]) for t in listed] == [("cancelled", None)] * 4
        assert [t["result"] is None for t in listed] == [False, False, True, True]
        assert sweep["best"] is None and all(t["objective"] is None for t in listed)
        for t in listed[:2]:  # partial results, kept
            assert 1 <= t["result"]["epochs_completed"] < LONG["epochs"]
            whole = c.get(f"/v1/sweeps/{sweep_id}/trials/{t['index']}").json()["result"]
            assert len(whole["loss_history"]) == whole["epochs_completed"] == t["result"]["epochs_completed"]
        assert sweep["progress"]["epochs_completed"] == sum(t["result"]["epochs_completed"] for t in listed[:2])
        assert c.post(f"/v1/sweeps/{sweep_id}/trials/0/predict", json={"x": [1.0]}).status_code == 409
        assert c.get(f"/v1/sweeps/{sweep_id}").json()["trials"]["cancelled"] == 4
        assert c.delete(f"/v1/sweeps/{sweep_id}").status_code == 204
        for path in ("", "/trials", "/trials/0"):
            assert c.get(f"/v1/sweeps/{sweep_id}{path}").status_code == 404, path
        assert c.delete(f"/v1/sweeps/{sweep_id}").status_code == 404
    assert run_rows(database_url, "SELECT trial FROM histories WHERE run_id = :s", s=sweep_id) == []
    assert run_rows(database_url, "SELECT id FROM sweep_chunks WHERE sweep_id = :s", s=sweep_id) == []


TINY: dict[str, Any] = {"dataset": {"x": [0.0, 1.0, 2.0, 3.0], "y": [0.0, 1.0, 0.0, 1.0]}, "grid": {"seed": [0, 1]}}


def sweep_with(**fields: Any) -> dict[str, Any]:
    """TINY (two trials of batches of 2) with fields set, or removed where None."""
    body = {**TINY, "hyperparameters": {"batch_size": 2, "epochs": 5}, **fields}
    return {k: v for k, v in body.items() if v is not None}


def drawn(**spec: Any) -> dict[str, Any]:
    return sweep_with(grid=None, random={"trials": 3, **spec})


THOUSAND = {"x": [float(i % 7) for i in range(1000)], "y": [0.5] * 1000}
# (case, body, expected status, pieces of the detail: each must be in it)
CASES: list[tuple[str, dict[str, Any], int, tuple[str, ...]]] = [
    ("unknown grid key", sweep_with(grid={"momentum": [0.9]}), 422, ("momentum cannot be swept",)),
    ("dtype is not sweepable", sweep_with(grid={"dtype": ["float32", "float64"]}), 422, ("dtype cannot be swept",)),
    ("device is not sweepable", sweep_with(grid={"device": ["cpu"]}), 422, ("device cannot be swept",)),
    ("split is not sweepable", sweep_with(grid={"validation_fraction": [0.25]}), 422, ("validation_fraction",)),
    ("empty value list", sweep_with(grid={"learning_rate": []}), 422, ("learning_rate: give at least one value",)),
    ("learning rate a string", sweep_with(grid={"learning_rate": [0.1, "a"]}), 422, ("learning_rate", "'a'")),
    ("batch size 1.5", sweep_with(grid={"batch_size": [1.5]}), 422, ("batch_size", "valid integer")),
    ("batch size 0", sweep_with(grid={"batch_size": [0, 1]}), 422, ("batch_size",)),
    ("values not a list", sweep_with(grid={"seed": 3}), 422, ('"grid", "seed"', "valid list")),
    ("early stopping patience 0", sweep_with(grid={"early_stopping": [{"patience": 0}]}), 422, ("early_stopping",)),
    (
        "grid over max_trials",
        sweep_with(grid={"seed": list(range(11)), "learning_rate": [0.1 * (i + 1) for i in range(10)]}),
        422,
        ('"grid"', "110 trials is over the limit of 100"),
    ),
    ("random over max_trials", drawn(trials=101), 422, ('"trials"', "101 trials is over the limit of 100")),
    (
        "batch size over the points in one trial",
        sweep_with(grid={"batch_size": [2, 5]}),
        422,
        ('"trials", 1, "batch_size"', "trial 1: batch_size 5 is larger than the 4 training points"),
    ),
    (
        "epochs over max_epochs in one trial",
        sweep_with(grid={"epochs": [5, 1_000_001]}),
        422,
        ('"trials", 1, "epochs"', "trial 1: at most 1000000 epochs"),
    ),
    (
        "random min over max",
        drawn(learning_rate={"min": 1.0, "max": 0.5}),
        422,
        ("learning_rate: min 1.0 is greater than max 0.5",),
    ),
    (
        "random log with min 0",
        drawn(learning_rate={"min": 0.0, "max": 0.5, "log": True}),
        422,
        ("learning_rate: a log range needs min > 0",),
    ),
    ("random range without max", drawn(learning_rate={"min": 0.1}), 422, ("learning_rate: max: Field required",)),
    ("random range of a bool", drawn(shuffle={"min": 0, "max": 1}), 422, ("shuffle_values",)),
    ("random dtype values", drawn(dtype_values=["float32"]), 422, ("dtype cannot be swept",)),
    ("random batch size 1.5", drawn(batch_size={"min": 1.5, "max": 2}), 422, ("batch_size",)),
    ("random epochs past int64", drawn(epochs={"min": 1, "max": 1e19}), 422, ("epochs", "2**63 - 1")),
    ("random seed past its range", drawn(seed={"min": 0, "max": 2.0**64}), 422, ("seed",)),
    ("random no trials", drawn(trials=0), 422, ("trials",)),
    ("both grid and random", sweep_with(random={"trials": 3}), 422, ("exactly one of grid, random or search",)),
    ("neither grid nor random", sweep_with(grid=None), 422, ("exactly one of grid, random or search",)),
    ("both dataset and dataset_id", sweep_with(dataset_id="ds_x"), 422, ("exactly one of dataset_id or dataset",)),
    ("neither dataset", sweep_with(dataset=None), 422, ("exactly one of dataset_id or dataset",)),
    ("unknown dataset_id", sweep_with(dataset=None, dataset_id="ds_nope"), 404, ("ds_nope",)),
    (
        "validation objective without a split",
        sweep_with(objective="final_validation_loss"),
        422,
        ('"objective"', "validation_fraction > 0"),
    ),
    ("unknown objective", sweep_with(objective="accuracy"), 422, ("objective",)),
    ("bad base", sweep_with(hyperparameters={"learning_rate": 0}), 422, ("learning_rate",)),
    ("unknown field", sweep_with(trials=3), 422, ("trials",)),
    ("halving factor 1", sweep_with(halving={"min_epochs": 1, "reduction_factor": 1}), 422, ("reduction_factor",)),
    ("halving min_epochs 0", sweep_with(halving={"min_epochs": 0}), 422, ('"halving", "min_epochs"',)),
    ("halving past epochs", sweep_with(halving={"min_epochs": 6}), 422, ('"min_epochs"', "past the 5 epochs")),
    (
        "halving brackets past epochs",
        sweep_with(halving={"min_epochs": 1, "reduction_factor": 3, "brackets": 3}),
        422,
        ('"halving", "brackets"', "first rung, 9 epochs, is past the 5 epochs"),
    ),
    (
        "halving with epochs varied",
        sweep_with(grid={"epochs": [4, 5]}, halving={"min_epochs": 1}),
        422,
        ('"halving"', "do not vary epochs"),
    ),
    (
        "work summed over the trials",  # each trial's 1e9 fits the 2e9 limit, the three do not
        {"dataset": THOUSAND, "hyperparameters": {"epochs": 1_000_000}, "grid": {"seed": [0, 1, 2]}},
        422,
        ('"epochs"', "3000000000 point-epochs is over the limit of 2000000000"),
    ),
]


@pytest.mark.parametrize(("case", "body", "status", "detail"), CASES, ids=[c[0] for c in CASES])
def test_bad_sweep_is_a_clear_4xx_and_nothing_is_stored(
    stranger: httpx.Client, case: str, body: dict[str, Any], status: int, detail: tuple[str, ...]
) -> None:
    r = stranger.post("/v1/sweeps", json=body)
    assert r.status_code == status, r.text
    said = json.dumps(r.json()["detail"])
    assert all(piece in said for piece in detail), said
    for listing in ("/v1/sweeps", "/v1/datasets", "/v1/jobs"):
        assert stranger.get(listing).json()["items"] == [], listing


def test_another_owners_sweep_is_404_everywhere_and_idempotent_retries(server: Server) -> None:
    mallory = server.new_key(f"mallory-{secrets.token_hex(4)}")
    body = sweep_with()
    key = {"Idempotency-Key": f"sweep-{secrets.token_hex(4)}"}
    with server.client() as ann, server.client(mallory) as mal:
        first = ann.post("/v1/sweeps", json=body, headers=key)
        assert first.status_code == 202, first.text
        sweep_id = first.json()["id"]
        wait_sweep(ann, sweep_id, "succeeded")
        for method, path, sent in [
            ("GET", "", None),
            ("GET", "/trials", None),
            ("GET", "/trials/0", None),
            ("POST", "/trials/0/predict", {"x": [1.0]}),
            ("POST", "/cancel", None),
            ("DELETE", "", None),
        ]:
            r = mal.request(method, f"/v1/sweeps/{sweep_id}{path}", json=sent)
            assert r.status_code == 404 and sweep_id in r.text, (method, path, r.text)
        assert mal.get("/v1/sweeps").json()["items"] == []
        assert ann.post(f"/v1/sweeps/{sweep_id}/trials/0/predict", json={"x": [1.0]}).status_code == 200
        assert (
            mal.post("/v1/sweeps", json=sweep_with(dataset=None, dataset_id=first.json()["dataset_id"])).status_code
            == 404
        )

        again = ann.post("/v1/sweeps", json=body, headers=key)  # a retry: the first sweep, not a second
        assert again.status_code == 200 and again.json()["id"] == sweep_id
        assert again.headers["Location"] == f"/v1/sweeps/{sweep_id}"
        assert again.json()["status"] == "succeeded" and again.json()["attempts"] == 1
        other = ann.post("/v1/sweeps", json=sweep_with(grid={"seed": [0, 2]}), headers=key)
        assert other.status_code == 422 and "Idempotency-Key" in other.text
        theirs = mal.post("/v1/sweeps", json=body, headers=key)  # keys are per owner
        assert theirs.status_code == 202 and theirs.json()["id"] != sweep_id
        mine = [s["id"] for s in pages(ann, "/v1/sweeps", 100)]
        assert mine.count(sweep_id) == 1 and theirs.json()["id"] not in mine
        assert ann.delete(f"/v1/sweeps/{sweep_id}").status_code == 204
        assert ann.post(f"/v1/sweeps/{sweep_id}/cancel").status_code == 404


def test_a_10000_trial_sweep_reads_in_under_100_ms(make_server: Callable[..., Server], database_url: str) -> None:
    server = make_server(database_url=database_url)
    grid = {"learning_rate": [round(0.01 * (i + 1), 2) for i in range(100)], "seed": list(range(100))}
    body = {"dataset": sine_points(10), "hyperparameters": {"epochs": 1, "batch_size": 5}, "grid": grid}
    with server.client() as c:
        started = time.perf_counter()
        r = c.post("/v1/sweeps", json=body)
        post_s = time.perf_counter() - started
        assert r.status_code == 202, r.text
        sweep = wait_sweep(c, r.json()["id"], *ENDED, timeout=60)
        ran_s = time.perf_counter() - started
        assert sweep["status"] == "succeeded"
        assert sweep["trials"]["total"] == sweep["trials"]["succeeded"] == 10_000

        def median_ms(path: str, **params: Any) -> float:
            times = []
            for _ in range(9):
                t0 = time.perf_counter()
                assert c.get(path, params=params).status_code == 200
                times.append((time.perf_counter() - t0) * 1000)
            return statistics.median(times)

        sweep_path = f"/v1/sweeps/{sweep['id']}"
        sweep_ms = median_ms(sweep_path)
        board_ms = median_ms(f"{sweep_path}/trials", order_by="objective", limit=20)
        last_ms = median_ms(f"{sweep_path}/trials", order_by="index", limit=20, cursor="c9979")
        board = c.get(f"{sweep_path}/trials", params={"order_by": "objective", "limit": 20}).json()
        last = c.get(f"{sweep_path}/trials", params={"limit": 20, "cursor": "c9979"}).json()
    print(
        f"\n10,000 trials ({database_url.split(':')[0]}): POST {post_s:.2f} s, done after {ran_s:.2f} s; "
        f"GET sweep {sweep_ms:.1f} ms, leaderboard {board_ms:.1f} ms, last page {last_ms:.1f} ms (medians of 9)"
    )
    objectives = [t["objective"] for t in board["items"]]
    assert len(objectives) == 20 and objectives == sorted(objectives)
    assert board["items"][0]["index"] == sweep["best"]["index"]
    assert [t["index"] for t in last["items"]] == list(range(9980, 10_000)) and last["next_cursor"] is None
    assert sweep_ms < 100 and board_ms < 100 and last_ms < 100
    assert post_s < 10
