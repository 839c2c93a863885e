"""Model-based search sweeps (`search: {"sampler": "tpe", ...}`) end to end: a real `tinytrain
serve` over HTTP, on SQLite and PostgreSQL. A trial is the job with its hyperparameters, and the
same request asks the same trials with the same results."""

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_events import events
from tests.api.test_sweeps import (
    ANY,
    ENDED,
    LONG,
    assert_trials_equal_jobs,
    assert_trials_equal_jobs_of_their_epochs,
    run_rows,
    trials,
    wait_sweep,
)
from tests.support.data import sine_points
from tests.support.databases import fresh_database
from tests.support.server import Server, serving

SPACE: dict[str, Any] = {
    "learning_rate": {"min": 0.01, "max": 3.0, "log": True},
    "batch_size": {"min": 4, "max": 32},
    "seed_values": [0, 1, 2],
}


def searched(trials: int = 12, batch: int = 5, **fields: Any) -> dict[str, Any]:
    return {
        "dataset": sine_points(60, seed=4),
        "hyperparameters": {"epochs": 9, "validation_fraction": 0.2, "dtype": "float64"},
        "search": {"sampler": "tpe", "trials": trials, "seed": 5, "batch": batch, **SPACE},
        **fields,
    }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("search")
    with fresh_database(request.param, tmp) as url, serving(tmp, database_url=url, max_trials="100") as started:
        yield started


def test_a_tpe_search_asks_every_trial_within_its_ranges_reproducibly_and_each_equals_its_job(
    server: Server,
) -> None:
    body = searched()
    with server.client() as c:
        ids = [c.post("/v1/sweeps", json=b).json()["id"] for b in (body, body)]
        first, again = (wait_sweep(c, sweep_id, *ENDED) for sweep_id in ids)
        assert first["status"] == again["status"] == "succeeded"
        assert first["search"] == body["search"] and first["trials"]["total"] == 12
        assert first["trials"]["succeeded"] + first["trials"]["failed"] == 12
        assert first["progress"]["epochs_completed"] == first["progress"]["epochs"] == 12 * 9
        listed, repeated = trials(c, ids[0]), trials(c, ids[1])
        assert [t["hyperparameters"] for t in listed] == [t["hyperparameters"] for t in repeated]
        assert [t["result"] for t in listed] == [{**t["result"], "training_seconds": ANY} for t in repeated]
        drawn = [t["hyperparameters"] for t in listed]
        assert all(0.01 <= hp["learning_rate"] <= 3.0 and 4 <= hp["batch_size"] <= 32 for hp in drawn)
        assert {hp["seed"] for hp in drawn} <= {0, 1, 2} and len({hp["learning_rate"] for hp in drawn}) == 12
        ranked = [t for t in trials(c, ids[0], order_by="objective") if t["objective"] is not None]
        assert {t["status"] for t in ranked} == {"succeeded"} and first["best"]["index"] == ranked[0]["index"]
        assert_trials_equal_jobs(c, first)


def test_a_tpe_search_with_halving_prunes_each_batch_and_a_trial_equals_the_job_of_its_rung(server: Server) -> None:
    body = searched(trials=18, batch=6, halving={"min_epochs": 1, "reduction_factor": 3, "brackets": 2})
    with server.client() as c:
        sweep = wait_sweep(c, c.post("/v1/sweeps", json=body).json()["id"], *ENDED)
        assert sweep["status"] == "succeeded" and sweep["halving"] == body["halving"]
        counts = sweep["trials"]
        assert counts["pruned"] >= 9 and counts["succeeded"] + counts["failed"] + counts["pruned"] == 18
        assert sweep["progress"]["epochs_completed"] == sweep["progress"]["epochs"] < 18 * 9 / 2
        listed = trials(c, sweep["id"])
        # Batches of 6 take the brackets in turn: rungs 1, 3, 9, then 3, 9.
        assert [t["bracket"] for t in listed] == [0] * 6 + [1] * 6 + [0] * 6
        for t in listed:
            assert (t["status"] == "pruned") == (t["epochs_completed"] < 9 and t["status"] != "failed")
        assert_trials_equal_jobs_of_their_epochs(c, sweep, listed)
        # What TPE is told of a pruned trial: its objective (the validation loss) at its rung.
        told = run_rows(
            server.env["TINYTRAIN_DATABASE_URL"],
            'SELECT "index", rung_objective FROM trials WHERE sweep_id = :s AND status = :p ORDER BY "index"',
            p="pruned",
            s=sweep["id"],
        )
        assert len(told) == counts["pruned"]
        for index, rung_objective in told:
            whole = c.get(f"/v1/sweeps/{sweep['id']}/trials/{index}").json()["result"]
            assert rung_objective == whole["validation_loss_history"][-1]
        again = wait_sweep(c, c.post("/v1/sweeps", json=body).json()["id"], *ENDED)
        assert [(t["hyperparameters"], t["status"]) for t in trials(c, again["id"])] == [
            (t["hyperparameters"], t["status"]) for t in listed
        ]


def test_a_batch_over_the_trials_is_one_batch_of_them_all(server: Server) -> None:
    with server.client() as c:
        sweep = wait_sweep(c, c.post("/v1/sweeps", json=searched(trials=3, batch=64)).json()["id"], *ENDED)
        assert (sweep["status"], sweep["trials"]["total"]) == ("succeeded", 3)


def bad(**search: Any) -> dict[str, Any]:
    body = searched()
    body["search"] = {k: v for k, v in {**body["search"], **search}.items() if v is not None}
    return body


# (case, body, pieces of the 422's detail: each must be in it)
CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("another sampler", bad(sampler="cmaes"), ('"search", "sampler"', "tpe")),
    ("no sampler", bad(sampler=None), ('"search", "sampler"',)),
    ("with grid", searched(grid={"seed": [0, 1]}), ("exactly one of grid, random or search",)),
    ("with random", searched(random={"trials": 2}), ("exactly one of grid, random or search",)),
    (
        "no ranges",
        {**searched(), "search": {"sampler": "tpe", "trials": 4}},
        ('"search"', "give at least one range"),
    ),
    ("batch 0", bad(batch=0), ('"search", "batch"',)),
    ("trials 0", bad(trials=0), ('"search", "trials"',)),
    ("trials over the limit", bad(trials=101), ('"search", "trials"', "over the limit of 100")),
    ("a bad range", bad(learning_rate={"min": 1.0, "max": 0.5}), ("learning_rate: min 1.0 is greater than max 0.5",)),
    ("batch size over the points", bad(batch_size={"min": 4, "max": 50}), ('"search", "batch_size"', "50")),
    (
        "halving with epochs searched",
        searched(halving={"min_epochs": 1}, search={**searched()["search"], "epochs": {"min": 2, "max": 9}}),
        ('"halving"', "do not vary epochs"),
    ),
    ("halving past the epochs", searched(halving={"min_epochs": 10}), ('"min_epochs"', "past the 9 epochs")),
]


@pytest.mark.parametrize(("case", "body", "detail"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_search_is_a_422_naming_the_field_and_nothing_is_stored(
    server: Server, case: str, body: dict[str, Any], detail: tuple[str, ...]
) -> None:
    with server.client(server.new_key(f"bad-search-{secrets.token_hex(4)}")) as c:
        r = c.post("/v1/sweeps", json=body)
        assert r.status_code == 422, r.text
        said = json.dumps(r.json()["detail"])
        assert all(piece in said for piece in detail), said
        assert c.get("/v1/sweeps").json()["items"] == []


def test_a_search_over_the_work_limit_counts_every_trial_at_its_longest(tmp_path: Path) -> None:
    # 10 trials x 60 points x up to 50 epochs = 30,000 point-epochs: over a limit of 20,000.
    body = searched(trials=10, search={**searched()["search"], "trials": 10, "epochs": {"min": 1, "max": 50}})
    with serving(tmp_path, max_work="20000") as started, started.client() as c:
        r = c.post("/v1/sweeps", json=body)
        assert r.status_code == 422, r.text
        assert "30000 point-epochs is over the limit of 20000" in r.text
        allowed = {**body, "search": {**body["search"], "epochs": {"min": 1, "max": 30}}}
        assert isinstance(c.post("/v1/sweeps", json=allowed).json()["id"], str)


def test_a_search_sweep_shows_its_search(server: Server) -> None:
    with server.client() as c:
        created = c.post("/v1/sweeps", json=searched(trials=2, batch=1)).json()
        assert created["search"]["sampler"] == "tpe" and created["grid"] is None and created["random"] is None
        assert wait_sweep(c, created["id"], *ENDED)["search"] == created["search"]


def test_a_search_streams_its_progress_to_the_end_and_cancel_ends_the_trials_not_asked(server: Server) -> None:
    with server.client() as c:
        sweep_id = c.post("/v1/sweeps", json=searched(trials=6, batch=2)).json()["id"]
        seen = list(events(c, f"/v1/sweeps/{sweep_id}/events"))
        assert seen[-1].event == "status" and seen[-1].json()["status"] == "succeeded"
        last = [e.json() for e in seen if e.event == "progress"][-1]
        assert last["trials"]["succeeded"] + last["trials"]["failed"] == 6 and last["epochs_completed"] == 6 * 9

        # Two batches of one long trial each: cancelled while the first trains.
        body = {
            "dataset": sine_points(5000),
            "hyperparameters": LONG,
            "search": {"sampler": "tpe", "trials": 2, "batch": 1, "seed_values": [0, 1]},
        }
        long_id = c.post("/v1/sweeps", json=body).json()["id"]
        running = wait_sweep(c, long_id, "running", epochs_completed=2)
        assert (running["trials"]["running"], running["trials"]["queued"]) == (1, 1)  # a batch at a time
        assert c.post(f"/v1/sweeps/{long_id}/cancel").status_code == 202
        sweep = wait_sweep(c, long_id, *ENDED, timeout=5)
        assert (sweep["status"], sweep["trials"]["cancelled"], sweep["best"]) == ("cancelled", 2, None)
        first, second = trials(c, long_id)
        assert 1 <= first["result"]["epochs_completed"] < LONG["epochs"] and second["result"] is None
        assert (
            first["hyperparameters"]["seed"] in (0, 1)
            and sweep["progress"]["epochs_completed"] == (first["result"]["epochs_completed"])
        )


def test_a_search_reserves_every_trial_at_its_longest_against_the_storage_quota(tmp_path: Path) -> None:
    # 10 trials of up to 1,000 epochs with a split: 10 x 1,000 x 16 bytes would pass 150,000.
    spec = {**searched()["search"], "trials": 10, "epochs": {"min": 1, "max": 1000}}
    with serving(tmp_path, max_storage_bytes_per_owner="150000") as started, started.client() as c:
        r = c.post("/v1/sweeps", json={**searched(), "search": spec})
        assert r.status_code == 429 and "storage quota" in r.text, r.text
        assert c.get("/v1/sweeps").json()["items"] == []
        spec = {**spec, "epochs": {"min": 1, "max": 900}}  # 144,000 bytes and the dataset's 960: it fits
        assert c.post("/v1/sweeps", json={**searched(), "search": spec}).status_code == 202


def test_a_search_of_epochs_ends_its_progress_at_the_epochs_its_trials_trained(server: Server) -> None:
    spec = {**searched()["search"], "trials": 6, "batch": 4, "epochs": {"min": 2, "max": 12}}
    with server.client() as c:
        sweep = wait_sweep(c, c.post("/v1/sweeps", json={**searched(), "search": spec}).json()["id"], *ENDED)
        trained = [t["result"]["epochs_completed"] for t in trials(c, sweep["id"])]
        assert sweep["status"] == "succeeded" and all(2 <= e <= 12 for e in trained)
        assert sweep["progress"] == {"epochs_completed": sum(trained), "epochs": sum(trained)}
