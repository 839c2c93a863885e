"""Hostile ids and names, and a database that goes away: a 404, 422 or 503, never a 500.

Against real `tinytrain serve` processes on both databases: PostgreSQL refuses a NUL byte in
text (a DataError), and the hot reads (jobs/reads.py) run on the driver without SQLAlchemy's
wrapping of its errors."""

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.client import wait_for
from tests.support.databases import refusing_connections
from tests.support.server import Server

POINTS = {"x": [0.0, 1.0, 2.0], "y": [1.0, 0.0, 1.0]}
SMALL_HP = {"batch_size": 1, "epochs": 2}
HEX = "0123456789abcdef01234567"

# Ids that can name nothing: a NUL byte (percent-encoded in the path), other control
# characters, the wrong shape, the wrong case, an overlong one, another type's prefix.
BAD_TAILS = ["%00", "%00" + HEX[:23], "%0A", "%7F", "x", "", HEX.upper(), HEX + "0", "a" * 2000]


def bad_ids(prefix: str) -> list[str]:
    return [f"{prefix}_{tail}" for tail in BAD_TAILS] + [
        f"{other}_{HEX}" for other in ("job", "ds", "sw") if other != prefix
    ]


@pytest.fixture(scope="module")
def client(each_database_server: Server) -> Iterator[httpx.Client]:
    with each_database_server.client() as c:
        yield c


def requests_on(prefix: str, object_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every route that takes an id of prefix's type in its path."""
    predict = {"json": {"x": [1.0]}}
    if prefix == "job":
        base = f"/v1/jobs/{object_id}"
        return [
            ("GET", base, {}),
            ("GET", f"{base}/result", {}),
            ("POST", f"{base}/cancel", {}),
            ("POST", f"{base}/predict", predict),
        ]
    if prefix == "ds":
        base = f"/v1/datasets/{object_id}"
        return [("GET", base, {}), ("DELETE", base, {})]
    base = f"/v1/sweeps/{object_id}"
    return [
        ("GET", base, {}),
        ("DELETE", base, {}),
        ("POST", f"{base}/cancel", {}),
        ("GET", f"{base}/trials", {}),
        ("GET", f"{base}/trials/0", {}),
        ("POST", f"{base}/trials/0/predict", predict),
    ]


@pytest.mark.parametrize("prefix", ["job", "ds", "sw"])
def test_an_id_that_cannot_exist_is_not_found(client: httpx.Client, prefix: str) -> None:
    for object_id in bad_ids(prefix):
        for method, path, kwargs in requests_on(prefix, object_id):
            r = client.request(method, path, **kwargs)
            assert r.status_code == 404, (method, path[:80], r.status_code, r.text[:200])
            assert r.json()["detail"].endswith("not found")


def test_a_well_formed_unknown_id_is_not_found_too(client: httpx.Client) -> None:
    for prefix in ("job", "ds", "sw"):
        for method, path, kwargs in requests_on(prefix, f"{prefix}_{HEX}"):
            assert client.request(method, path, **kwargs).status_code == 404, (method, path)


def test_a_bad_key_is_still_unauthorized_whatever_the_id(each_database_server: Server) -> None:
    with httpx.Client(base_url=each_database_server.url, headers={"Authorization": "Bearer nope"}) as c:
        for path in ("/v1/jobs/job_%00", f"/v1/jobs/job_{HEX}", "/v1/datasets/ds_x", "/v1/sweeps/sw_%00/trials"):
            assert c.get(path).status_code == 401, path
        assert c.post("/v1/jobs/job_%00/cancel").status_code == 401
        assert c.delete("/v1/datasets/ds_%00").status_code == 401


def _counts(client: httpx.Client) -> tuple[int, int, int]:
    return tuple(  # type: ignore[return-value]
        len(client.get(f"/v1/{kind}", params={"limit": 100}).json()["items"]) for kind in ("datasets", "jobs", "sweeps")
    )


@pytest.mark.parametrize("dataset_id", ["ds_\u0000", "ds_\u0000" + HEX[:23], "ds_\n", "\u0000", "ds_" + "a" * 201])
@pytest.mark.parametrize("kind", ["jobs", "sweeps"])
def test_a_dataset_id_with_control_characters_is_invalid(client: httpx.Client, kind: str, dataset_id: str) -> None:
    before = _counts(client)
    body: dict[str, Any] = {"dataset_id": dataset_id, "hyperparameters": SMALL_HP}
    if kind == "sweeps":
        body["grid"] = {"learning_rate": [0.1, 0.2]}
    r = client.post(f"/v1/{kind}", json=body)
    assert r.status_code == 422, r.text
    assert ["body", "dataset_id"] in [e["loc"] for e in r.json()["detail"]]
    assert _counts(client) == before


@pytest.mark.parametrize("dataset_id", ["ds_nope", "ds_" + HEX.upper(), f"job_{HEX}", "ds_\u00e9"])
def test_a_dataset_id_of_another_shape_names_no_dataset(client: httpx.Client, dataset_id: str) -> None:
    r = client.post("/v1/jobs", json={"dataset_id": dataset_id, "hyperparameters": SMALL_HP})
    assert r.status_code == 404, r.text
    assert dataset_id in r.json()["detail"]


@pytest.mark.parametrize("name", ["a\u0000b", "a\nb", "\u0000", "tab\there", "del\u007f", "a\rb", "\u001b[31mred"])
def test_a_name_with_control_characters_is_invalid_and_nothing_is_stored(client: httpx.Client, name: str) -> None:
    before = _counts(client)
    bodies = [
        ("/v1/datasets", {**POINTS, "name": name}),
        ("/v1/jobs", {"dataset": POINTS, "hyperparameters": SMALL_HP, "name": name}),
        ("/v1/sweeps", {"dataset": POINTS, "hyperparameters": SMALL_HP, "grid": {"batch_size": [1, 3]}, "name": name}),
    ]
    for path, body in bodies:
        r = client.post(path, json=body)
        assert r.status_code == 422, (path, r.text)
        assert ["body", "name"] in [e["loc"] for e in r.json()["detail"]], r.text
    assert _counts(client) == before


def test_printable_names_are_kept(client: httpx.Client) -> None:
    name = "ünïcödé name — with spaces, 日本語 and emoji 🙂"
    r = client.post("/v1/datasets", json={**POINTS, "name": name})
    assert r.status_code == 201, r.text
    assert client.get(f"/v1/datasets/{r.json()['id']}").json()["name"] == name


def test_reads_answer_503_while_postgresql_is_unreachable_and_recover(
    make_server: Callable[..., Server], postgres_url: str
) -> None:
    server = make_server(database_url=postgres_url)
    with server.client() as c:
        ds = c.post("/v1/datasets", json=POINTS).json()["id"]
        job = c.post("/v1/jobs", json={"dataset_id": ds, "hyperparameters": SMALL_HP}).json()["id"]
        wait_for(c, job, "succeeded")
        reads = [f"/v1/jobs/{job}", "/v1/jobs", f"/v1/datasets/{ds}", "/v1/datasets", f"/v1/jobs/{job}/result"]
        with refusing_connections(postgres_url):
            for _ in range(3):  # the pool's connections were dropped; new ones are refused
                for path in reads:
                    r = c.get(path)
                    assert r.status_code == 503, (path, r.status_code, r.text)
                    assert r.json() == {"detail": "the database is unavailable; try again shortly"}
            assert c.post("/v1/datasets", json=POINTS).status_code == 503
            assert c.get("/healthz").status_code == 200
        deadline = time.monotonic() + 10
        while c.get(f"/v1/jobs/{job}").status_code != 200:
            assert time.monotonic() < deadline, "reads did not recover"
            time.sleep(0.1)
        for path in reads:
            assert c.get(path).status_code == 200, path
