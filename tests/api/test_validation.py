"""Every bad request gets a clear 4xx naming the problem, and nothing is stored or queued."""

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.client import raw_json
from tests.support.data import SMALL_JOB
from tests.support.server import Server


def job_with(**hp: Any) -> dict[str, Any]:
    return {**SMALL_JOB, "hyperparameters": {"batch_size": 2, **hp}}


# (case, method, path, request kwargs, expected status, a piece of the detail)
CASES: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("unknown top-level field", "POST", "/v1/jobs", {"json": {**SMALL_JOB, "priority": 9}}, 422, "priority"),
    ("unknown hyperparameter", "POST", "/v1/jobs", {"json": job_with(momentum=0.9)}, 422, "momentum"),
    ("NaN literal", "POST", "/v1/jobs", raw_json('{"dataset": {"x": [NaN], "y": [1]}}'), 422, "finite"),
    ("Infinity literal", "POST", "/v1/jobs", raw_json('{"dataset": {"x": [1], "y": [Infinity]}}'), 422, "finite"),
    ("1e400 overflows", "POST", "/v1/jobs", raw_json('{"dataset": {"x": [1e400], "y": [1]}}'), 422, "finite"),
    ("string nan", "POST", "/v1/jobs", {"json": {"dataset": {"x": ["nan"], "y": [1.0]}}}, 422, "x"),
    ("string number", "POST", "/v1/jobs", {"json": job_with(learning_rate="0.1")}, 422, "learning_rate"),
    ("boolean for float", "POST", "/v1/jobs", {"json": job_with(learning_rate=True)}, 422, "learning_rate"),
    ("float for int", "POST", "/v1/jobs", {"json": job_with(epochs=10.0)}, 422, "epochs"),
    ("lengths differ", "POST", "/v1/jobs", {"json": {"dataset": {"x": [1.0, 2.0], "y": [1.0]}}}, 422, "differ"),
    ("no points", "POST", "/v1/jobs", {"json": {"dataset": {"x": [], "y": []}}}, 422, "x"),
    ("batch larger than the points", "POST", "/v1/jobs", {"json": job_with(batch_size=5)}, 422, "batch_size"),
    (
        "batch larger after the split",
        "POST",
        "/v1/jobs",
        {"json": job_with(batch_size=4, validation_fraction=0.25)},
        422,
        "batch_size",
    ),
    ("batch size zero", "POST", "/v1/jobs", {"json": job_with(batch_size=0)}, 422, "batch_size"),
    ("learning rate zero", "POST", "/v1/jobs", {"json": job_with(learning_rate=0)}, 422, "learning_rate"),
    (
        "validation fraction 0.5",
        "POST",
        "/v1/jobs",
        {"json": job_with(validation_fraction=0.5)},
        422,
        "validation_fraction",
    ),
    ("epochs over the limit", "POST", "/v1/jobs", {"json": job_with(epochs=100001)}, 422, "epochs"),
    (
        "points over the limit",
        "POST",
        "/v1/jobs",
        {"json": {"dataset": {"x": [1.0] * 1001, "y": [1.0] * 1001}}},
        422,
        "1000 points",
    ),
    (
        "partial initial parameters",
        "POST",
        "/v1/jobs",
        {"json": job_with(initial_parameters={"w11": 1.0})},
        422,
        "w12",
    ),
    ("bad dtype", "POST", "/v1/jobs", {"json": job_with(dtype="float16")}, 422, "dtype"),
    ("cuda without a GPU", "POST", "/v1/jobs", {"json": job_with(device="cuda")}, 422, "GPU worker"),
    (
        "early stopping patience 0",
        "POST",
        "/v1/jobs",
        {"json": job_with(early_stopping={"patience": 0})},
        422,
        "patience",
    ),
    (
        "both dataset and dataset_id",
        "POST",
        "/v1/jobs",
        {"json": {**SMALL_JOB, "dataset_id": "ds_x"}},
        422,
        "exactly one",
    ),
    ("neither dataset", "POST", "/v1/jobs", {"json": {"hyperparameters": {}}}, 422, "exactly one"),
    ("unknown dataset_id", "POST", "/v1/jobs", {"json": {"dataset_id": "ds_nope"}}, 404, "ds_nope"),
    (
        "negative max runtime",
        "POST",
        "/v1/jobs",
        {"json": {**SMALL_JOB, "max_runtime_seconds": -1}},
        422,
        "max_runtime_seconds",
    ),
    ("unparseable JSON", "POST", "/v1/jobs", raw_json('{"dataset": '), 400, "not valid JSON"),
    ("unparseable dataset JSON", "POST", "/v1/datasets", raw_json("[1, 2"), 400, "not valid JSON"),
    ("dataset unknown field", "POST", "/v1/datasets", {"json": {"x": [1.0], "y": [1.0], "z": [1.0]}}, 422, "z"),
    ("dataset NaN", "POST", "/v1/datasets", raw_json('{"x": [NaN], "y": [1]}'), 422, "finite"),
    (
        "CSV with a bad line",
        "POST",
        "/v1/datasets",
        {"content": "x,y\n1,2\n3,oops\n", "headers": {"Content-Type": "text/csv"}},
        422,
        "line 3",
    ),
    (
        "CSV with nan",
        "POST",
        "/v1/datasets",
        {"content": "1,nan\n", "headers": {"Content-Type": "text/csv"}},
        422,
        "line 1",
    ),
    (
        "other content type",
        "POST",
        "/v1/datasets",
        {"content": "1,2", "headers": {"Content-Type": "text/plain"}},
        415,
        "text/csv",
    ),
    ("body over the limit", "POST", "/v1/datasets", {"json": {"x": [1.0] * 30000, "y": [1.0] * 30000}}, 413, "limit"),
    ("unknown job", "GET", "/v1/jobs/job_nope", {}, 404, "job_nope"),
    ("unknown dataset", "GET", "/v1/datasets/ds_nope", {}, 404, "ds_nope"),
    ("bad status filter", "GET", "/v1/jobs?status=done", {}, 422, "status"),
    ("bad cursor", "GET", "/v1/jobs?cursor=zzz", {}, 422, "cursor"),
    ("limit too large", "GET", "/v1/jobs?limit=1000", {}, 422, "limit"),
]


@pytest.fixture(scope="module")
def client(shared_server: Server) -> Iterator[httpx.Client]:
    with shared_server.client() as c:
        yield c


@pytest.mark.parametrize(("case", "method", "path", "kwargs", "status", "detail"), CASES, ids=[c[0] for c in CASES])
def test_bad_request_is_a_clear_4xx(
    client: httpx.Client, case: str, method: str, path: str, kwargs: dict[str, Any], status: int, detail: str
) -> None:
    before = client.get("/v1/jobs").json()["items"], client.get("/v1/datasets").json()["items"]
    r = client.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert detail in json.dumps(r.json()["detail"]), r.text
    assert (client.get("/v1/jobs").json()["items"], client.get("/v1/datasets").json()["items"]) == before


def test_chunked_body_over_the_limit_is_413_before_it_is_buffered(shared_server: Server) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"x": ['
        for _ in range(10_000):  # 10,000 x 100 bytes, five times the 200,000-byte limit
            sent += 100
            yield b"1.0," * 25
        yield b'1.0], "y": [1.0]}'

    with shared_server.client() as c:
        r = c.post("/v1/datasets", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]


def test_missing_or_bad_key_is_401_with_www_authenticate(shared_server: Server) -> None:
    for headers in ({}, {"Authorization": "Bearer tt_not-a-key"}, {"Authorization": "Basic abc"}):
        r = httpx.get(f"{shared_server.url}/v1/jobs", headers=headers)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer", headers


def test_wrong_state_is_409_and_idempotency_mismatch_is_422(client: httpx.Client) -> None:
    first = client.post("/v1/jobs", json=SMALL_JOB, headers={"Idempotency-Key": "abc"})
    again = client.post("/v1/jobs", json=SMALL_JOB, headers={"Idempotency-Key": "abc"})
    assert (first.status_code, again.status_code) == (202, 200) and first.json()["id"] == again.json()["id"]
    other = client.post("/v1/jobs", json=job_with(epochs=7), headers={"Idempotency-Key": "abc"})
    assert other.status_code == 422 and "Idempotency-Key" in other.text
    queued = client.post("/v1/jobs", json=job_with(epochs=100000, batch_size=1)).json()
    assert client.get(f"/v1/jobs/{queued['id']}/result").status_code == 409
    assert client.post(f"/v1/jobs/{queued['id']}/predict", json={"x": [1.0]}).status_code == 409
    assert client.delete(f"/v1/datasets/{queued['dataset_id']}").status_code == 409
    client.post(f"/v1/jobs/{queued['id']}/cancel")
    done = client.get(f"/v1/jobs/{first.json()['id']}").json()
    while done["status"] not in ("succeeded", "failed"):
        done = client.get(f"/v1/jobs/{done['id']}").json()
    assert client.post(f"/v1/jobs/{done['id']}/cancel").status_code == 409
    assert client.post(f"/v1/jobs/{done['id']}/predict", json={"x": [1.0] * 51}).status_code == 422


def test_every_v1_operation_needs_a_key(shared_server: Server) -> None:
    spec = httpx.get(f"{shared_server.url}/openapi.json").json()
    operations = [(m, p) for p, ops in spec["paths"].items() if p.startswith("/v1/") for m in ops]
    assert len(operations) >= 10
    for method, path in operations:
        url = shared_server.url + path.replace("{job_id}", "job_x").replace("{dataset_id}", "ds_x")
        r = httpx.request(method.upper(), url, json={})
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer", (method, path, r.status_code)


def test_pages_follow_next_cursor_newest_first(client: httpx.Client) -> None:
    made = [
        client.post("/v1/datasets", json={"x": [float(i)], "y": [1.0], "name": f"p{i}"}).json()["id"] for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        page = client.get("/v1/datasets", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [d for d in seen if d in made] == made[::-1]
