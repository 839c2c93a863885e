"""Deleting jobs, the per-owner storage quota and the retention of finished runs, end to end: a real
`tinytrain serve` (local executor) over HTTP, on SQLite and PostgreSQL. What the API no longer
shows (histories, chunks, a dataset sent inline) is checked in the database itself."""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.api.test_sweeps import run_rows, wait_sweep
from tests.support.client import wait_for
from tests.support.data import sine_points
from tests.support.server import Server

LONG = {"learning_rate": 0.001, "batch_size": 1, "epochs": 100_000}  # minutes of training on 5,000 points
QUICK = {"batch_size": 2, "epochs": 5}
ENDED = ("succeeded", "failed", "cancelled")


def points(n: int) -> dict[str, list[float]]:
    return {"x": [float(i) for i in range(n)], "y": [0.5] * n}


def submitted(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(path, json=body)
    assert r.status_code == 202, r.text
    out: dict[str, Any] = r.json()
    return out


def count(database_url: str, table: str, owner: str = "default") -> int:
    """The owner's rows of a table that has an owner column."""
    return int(run_rows(database_url, f"SELECT count(*) FROM {table} WHERE owner = :o", o=owner)[0][0])


def histories(database_url: str, run_id: str) -> int:
    return int(run_rows(database_url, "SELECT count(*) FROM histories WHERE run_id = :r", r=run_id)[0][0])


def exists(client: httpx.Client, path: str) -> bool:
    status = client.get(path).status_code
    assert status in (200, 404), (path, status)
    return status == 200


def test_delete_of_a_queued_or_running_job_is_409_and_a_finished_one_goes_with_what_only_it_used(
    make_server: Callable[..., Server], database_url: str
) -> None:
    # One process: the long job runs, the next waits queued.
    server = make_server(database_url=database_url, local_workers="1")
    with server.client() as c, server.client(server.new_key("mallory")) as mal:
        running = submitted(c, "/v1/jobs", {"dataset": sine_points(5000), "hyperparameters": LONG})
        wait_for(c, running["id"], "running", epochs_completed=1)
        queued = submitted(c, "/v1/jobs", {"dataset": points(4), "hyperparameters": QUICK})
        for job, status in ((running, "running"), (queued, "queued")):
            r = c.delete(f"/v1/jobs/{job['id']}")
            assert r.status_code == 409 and f"is {status}: cancel it first" in r.json()["detail"], r.text
            assert c.get(f"/v1/jobs/{job['id']}").json()["status"] == status
            assert exists(c, f"/v1/datasets/{job['dataset_id']}")
        assert mal.delete(f"/v1/jobs/{running['id']}").status_code == 404  # another owner's: as if not there
        for bad in ("job_%00", "job_nope", f"{running['id']}0"):
            r = c.delete(f"/v1/jobs/{bad}")
            assert r.status_code == 404 and r.json()["detail"].endswith("not found"), bad
        assert httpx.delete(f"{server.url}/v1/jobs/{running['id']}").status_code == 401
        progress = c.get(f"/v1/jobs/{running['id']}").json()["progress"]["epochs_completed"]
        wait_for(c, running["id"], "running", epochs_completed=progress + 1)  # intact: it trains on

        assert c.post(f"/v1/jobs/{queued['id']}/cancel").status_code == 202
        assert c.post(f"/v1/jobs/{running['id']}/cancel").status_code == 202
        wait_for(c, running["id"], "cancelled")
        assert histories(database_url, running["id"]) > 0  # the partial result's
        for job in (running, queued):
            assert c.delete(f"/v1/jobs/{job['id']}").status_code == 204
            for path in ("", "/result", "/cancel"):
                method = "POST" if path == "/cancel" else "GET"
                assert c.request(method, f"/v1/jobs/{job['id']}{path}").status_code == 404, path
            assert c.delete(f"/v1/jobs/{job['id']}").status_code == 404
            assert not exists(c, f"/v1/datasets/{job['dataset_id']}")  # sent inline, used by nothing else
            assert histories(database_url, job["id"]) == 0
        assert c.get("/v1/jobs").json()["items"] == []

        uploaded = c.post("/v1/datasets", json=points(4)).json()["id"]
        job = submitted(c, "/v1/jobs", {"dataset_id": uploaded, "hyperparameters": QUICK})
        wait_for(c, job["id"], "succeeded")
        assert histories(database_url, job["id"]) == 1
        assert c.delete(f"/v1/jobs/{job['id']}").status_code == 204
        assert histories(database_url, job["id"]) == 0
        assert exists(c, f"/v1/datasets/{uploaded}")  # uploaded: its owner deletes it
    assert count(database_url, "jobs") == 0 and count(database_url, "datasets") == 1


def test_a_dataset_sent_inline_stays_while_another_job_or_sweep_uses_it(
    make_server: Callable[..., Server], database_url: str
) -> None:
    server = make_server(database_url=database_url)
    with server.client() as c:
        first = submitted(c, "/v1/jobs", {"dataset": points(4), "hyperparameters": QUICK})
        dataset = f"/v1/datasets/{first['dataset_id']}"
        second = submitted(c, "/v1/jobs", {"dataset_id": first["dataset_id"], "hyperparameters": QUICK})
        sweep = submitted(
            c, "/v1/sweeps", {"dataset_id": first["dataset_id"], "hyperparameters": QUICK, "grid": {"seed": [0, 1]}}
        )
        for job in (first, second):
            wait_for(c, job["id"], "succeeded")
        wait_sweep(c, sweep["id"], "succeeded")
        assert c.delete(f"/v1/jobs/{first['id']}").status_code == 204
        assert exists(c, dataset)  # the second job and the sweep use it
        assert c.delete(f"/v1/jobs/{second['id']}").status_code == 204
        assert exists(c, dataset)  # the sweep uses it

        # The other way round: a job on a sweep's inline dataset goes, the dataset stays.
        inline_sweep = submitted(
            c, "/v1/sweeps", {"dataset": points(4), "hyperparameters": QUICK, "grid": {"seed": [0]}}
        )
        on_it = submitted(c, "/v1/jobs", {"dataset_id": inline_sweep["dataset_id"], "hyperparameters": QUICK})
        wait_for(c, on_it["id"], "succeeded")
        assert c.delete(f"/v1/jobs/{on_it['id']}").status_code == 204
        assert exists(c, f"/v1/datasets/{inline_sweep['dataset_id']}")

        # Whichever job goes last takes the dataset: here the one that sent it goes last.
        sender = submitted(c, "/v1/jobs", {"dataset": points(4), "hyperparameters": QUICK})
        reuser = submitted(c, "/v1/jobs", {"dataset_id": sender["dataset_id"], "hyperparameters": QUICK})
        for job in (sender, reuser):
            wait_for(c, job["id"], "succeeded")
        assert c.delete(f"/v1/jobs/{reuser['id']}").status_code == 204
        assert exists(c, f"/v1/datasets/{sender['dataset_id']}")
        assert c.delete(f"/v1/jobs/{sender['id']}").status_code == 204
        assert not exists(c, f"/v1/datasets/{sender['dataset_id']}")
    rows = run_rows(database_url, "SELECT id FROM datasets ORDER BY seq")
    assert [row[0] for row in rows] == [first["dataset_id"], inline_sweep["dataset_id"]]


def test_over_the_storage_quota_uploads_and_inline_datasets_are_429_and_nothing_is_stored(
    make_server: Callable[..., Server], database_url: str
) -> None:
    server = make_server(database_url=database_url, max_storage_bytes_per_owner="1000")
    key = {"Idempotency-Key": "first-upload"}
    with server.client() as c, server.client(server.new_key("bob")) as bob:
        first = c.post("/v1/datasets", json=points(40), headers=key)  # 640 bytes
        assert first.status_code == 201, first.text

        def stored() -> list[int]:
            return [count(database_url, table) for table in ("datasets", "jobs", "sweeps")]

        def refused(path: str, total: int, **request: Any) -> None:
            before = stored()
            r = c.post(path, **request)
            assert r.status_code == 429, r.text
            detail = r.json()["detail"]
            assert "1000 bytes of datasets and loss histories is the storage quota" in detail, detail
            assert f"would make {total} " in detail, detail
            assert "Retry-After" not in r.headers  # waiting frees nothing: deleting does
            assert stored() == before

        refused("/v1/datasets", 1120, json=points(30))
        csv = "x,y\n" + "".join(f"{i},0.5\n" for i in range(30))
        refused("/v1/datasets", 1120, content=csv, headers={"Content-Type": "text/csv"})
        # With the loss histories they will store: 8 bytes an epoch, of each trial.
        refused("/v1/jobs", 1120 + 40, json={"dataset": points(30), "hyperparameters": QUICK})
        sweep = {"dataset": points(30), "hyperparameters": QUICK, "grid": {"seed": [0, 1]}}
        refused("/v1/sweeps", 1120 + 80, json=sweep)
        assert stored() == [1, 0, 0]
        again = c.post("/v1/datasets", json=points(40), headers=key)  # a retry stores nothing: not refused
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        assert bob.post("/v1/datasets", json=points(30)).status_code == 201  # the quota is per owner

        # A stored dataset adds nothing; its job's loss history (8 bytes an epoch) is counted.
        on_stored = {"dataset_id": first.json()["id"], "hyperparameters": {**QUICK, "epochs": 40}}
        refused("/v1/jobs", 640 + 8 * 50, json={**on_stored, "hyperparameters": {**QUICK, "epochs": 50}})
        job = submitted(c, "/v1/jobs", on_stored)
        wait_for(c, job["id"], "succeeded")
        refused("/v1/datasets", 640 + 320 + 48, json=points(3))
        assert c.delete(f"/v1/jobs/{job['id']}").status_code == 204
        assert c.post("/v1/datasets", json=points(1)).status_code == 201  # 656 bytes
        inline = submitted(c, "/v1/jobs", {"dataset": points(4), "hyperparameters": QUICK})  # 720 + 40
        wait_for(c, inline["id"], "succeeded")
        assert count(database_url, "datasets") == 3 and count(database_url, "datasets", "bob") == 1


def test_jobs_sent_at_once_with_inline_points_cannot_share_the_last_room(
    make_server: Callable[..., Server], database_url: str
) -> None:
    server = make_server(database_url=database_url, max_storage_bytes_per_owner="1000")
    body = {"dataset": points(40), "hyperparameters": QUICK}  # 640 bytes: one fits, two do not

    def submit(_: int) -> int:
        with server.client() as c:
            return c.post("/v1/jobs", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        answers = sorted(pool.map(submit, range(8)))
    assert answers == [202] + [429] * 7
    assert count(database_url, "datasets") == count(database_url, "jobs") == 1


def test_retention_deletes_old_finished_jobs_and_sweeps_but_never_a_running_one(
    make_server: Callable[..., Server], database_url: str
) -> None:
    # Finished runs go 5 s after they finished; the reaper (half a lease) passes every second.
    server = make_server(database_url=database_url, retention_days=str(5 / 86400), lease_seconds="2")
    with server.client() as c:
        uploaded = c.post("/v1/datasets", json=points(4)).json()["id"]
        running = submitted(c, "/v1/jobs", {"dataset": sine_points(5000), "hyperparameters": LONG})
        wait_for(c, running["id"], "running", epochs_completed=1)
        job = submitted(c, "/v1/jobs", {"dataset": points(4), "hyperparameters": QUICK})
        on_upload = submitted(c, "/v1/jobs", {"dataset_id": uploaded, "hyperparameters": QUICK})
        sweep = submitted(c, "/v1/sweeps", {"dataset": points(4), "hyperparameters": QUICK, "grid": {"seed": [0, 1]}})
        for done in (job, on_upload):
            wait_for(c, done["id"], "succeeded")
        wait_sweep(c, sweep["id"], "succeeded")

        finished = [f"/v1/jobs/{job['id']}", f"/v1/jobs/{on_upload['id']}", f"/v1/sweeps/{sweep['id']}"]
        deadline = time.monotonic() + 30
        while any(exists(c, path) for path in finished):
            assert time.monotonic() < deadline, [path for path in finished if exists(c, path)]
            time.sleep(0.1)
        for run_id in (job["id"], on_upload["id"], sweep["id"]):
            assert histories(database_url, run_id) == 0, run_id
        for table in ("sweep_chunks", "trials"):
            assert run_rows(database_url, f"SELECT count(*) FROM {table} WHERE sweep_id = :s", s=sweep["id"])[0][0] == 0
        for inline in (job, sweep):
            assert not exists(c, f"/v1/datasets/{inline['dataset_id']}")
        assert exists(c, f"/v1/datasets/{uploaded}")  # uploaded: never purged

        progress = c.get(f"/v1/jobs/{running['id']}").json()["progress"]["epochs_completed"]
        wait_for(c, running["id"], "running", epochs_completed=progress + 1)
        assert exists(c, f"/v1/datasets/{running['dataset_id']}")
        assert c.post(f"/v1/jobs/{running['id']}/cancel").status_code == 202
        wait_for(c, running["id"], *ENDED)
        deadline = time.monotonic() + 30
        while exists(c, f"/v1/jobs/{running['id']}"):  # finished now: it goes too
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert not exists(c, f"/v1/datasets/{running['dataset_id']}")
        assert histories(database_url, running["id"]) == 0
    assert count(database_url, "jobs") == count(database_url, "sweeps") == 0
    assert count(database_url, "datasets") == 1


def test_the_loss_histories_a_run_will_store_count_against_the_quota_at_submit(
    make_server: Callable[..., Server], database_url: str
) -> None:
    """What a job or sweep will store (trials x epochs x 8 bytes, twice with a validation split)
    is counted at submit, while it is queued or running, on stored datasets as on inline ones."""
    # One process, kept busy by another owner: ann's first job waits queued, its room reserved.
    server = make_server(database_url=database_url, max_storage_bytes_per_owner="1000000", local_workers="1")
    with server.client() as ann, server.client(server.new_key("bob")) as bob:
        busy = submitted(bob, "/v1/jobs", {"dataset": sine_points(5000), "hyperparameters": LONG})  # 880,000
        one = ann.post("/v1/datasets", json=points(1)).json()["id"]  # 16 bytes
        split = {"batch_size": 1, "validation_fraction": 0.25}

        def refused(path: str, total: int, body: dict[str, Any]) -> None:
            before = [count(database_url, table, "default") for table in ("datasets", "jobs", "sweeps")]
            r = ann.post(path, json=body)
            assert r.status_code == 429, r.text
            assert "storage quota" in r.json()["detail"] and f"would make {total} " in r.json()["detail"], r.text
            assert [count(database_url, table, "default") for table in ("datasets", "jobs", "sweeps")] == before

        million = {"batch_size": 1, "epochs": 1_000_000}
        refused("/v1/jobs", 16 + 8_000_000, {"dataset_id": one, "hyperparameters": million})
        refused("/v1/jobs", 32 + 8_000_000, {"dataset": points(1), "hyperparameters": million})
        grid = {"seed": list(range(13))}
        refused(
            "/v1/sweeps",
            16 + 13 * 80_000,
            {"dataset_id": one, "hyperparameters": {**million, "epochs": 10_000}, "grid": grid},
        )
        four = ann.post("/v1/datasets", json=points(4)).json()["id"]  # 64 bytes
        refused("/v1/jobs", 80 + 16 * 62_500, {"dataset_id": four, "hyperparameters": {**split, "epochs": 62_500}})
        first = submitted(ann, "/v1/jobs", {"dataset_id": four, "hyperparameters": {**split, "epochs": 60_000}})
        assert first["status"] == "queued"
        # Its 960,000 bytes are reserved: what would pass the rest is refused, runs and uploads alike.
        refused("/v1/jobs", 80 + 960_000 + 40_000, {"dataset_id": one, "hyperparameters": {"epochs": 5000}})
        refused("/v1/datasets", 80 + 960_000 + 40_000, points(2500))
        assert ann.post("/v1/datasets", json=points(2400)).status_code == 201  # 38,400: it fits

        assert bob.post(f"/v1/jobs/{busy['id']}/cancel").status_code == 202
        wait_for(ann, first["id"], "succeeded", timeout=120)
        usage = run_rows(database_url, "SELECT bytes FROM usage WHERE owner = 'default'")[0][0]
        assert usage == 80 + 38_400 + 960_000 <= 1_000_000  # what it reserved, it stored
        refused("/v1/jobs", usage + 1600, {"dataset_id": one, "hyperparameters": {"epochs": 200}})
