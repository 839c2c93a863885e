"""Abuse over HTTP against a real server: OWASP API Top 10 (2023) items that apply, each with the
status it must get, and never a 5xx, a NaN, another owner's data or a key in a log."""

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support.cli import tinytrain
from tests.support.client import assert_all_finite, raw_json, wait_for
from tests.support.data import SMALL_JOB, sine_points
from tests.support.keys import bearer
from tests.support.server import Server, serving

LIMITS = {
    "max_points": "1000",
    "max_epochs": "1000000",
    "max_work": "500000000",
    "max_body_bytes": "200000",
    "max_predict_points": "50",
    "max_active_jobs_per_owner": "3",
}
FOREVER = {"learning_rate": 0.001, "batch_size": 1, "epochs": 500_000}  # 1,000 points: minutes, within max_work

seen: list[httpx.Response] = []


def record(response: httpx.Response) -> None:
    response.read()
    seen.append(response)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("abuse"), **LIMITS) as s:
        yield s
    assert_no_5xx_and_no_secret_in_logs(s)


def client(server: Server, key: str | None = None, **headers: str) -> httpx.Client:
    auth = bearer(key) if key else {}
    return httpx.Client(
        base_url=server.url, headers={**auth, **headers}, event_hooks={"response": [record]}, timeout=30
    )


def deep(levels: int) -> str:
    return '{"dataset": {"x": ' + "[" * levels + "]" * levels + ', "y": [1]}}'


# (OWASP item, case, method, path, request kwargs, expected status)
CASES: list[tuple[str, str, str, str, dict[str, Any], int]] = [
    ("API3 mass assignment", "job status", "POST", "/v1/jobs", {"json": {**SMALL_JOB, "status": "succeeded"}}, 422),
    ("API3 mass assignment", "job owner", "POST", "/v1/jobs", {"json": {**SMALL_JOB, "owner": "someone"}}, 422),
    ("API3 mass assignment", "job id", "POST", "/v1/jobs", {"json": {**SMALL_JOB, "id": "job_mine"}}, 422),
    ("API3 mass assignment", "job attempts", "POST", "/v1/jobs", {"json": {**SMALL_JOB, "attempts": 0}}, 422),
    (
        "API3 mass assignment",
        "job result",
        "POST",
        "/v1/jobs",
        {"json": {**SMALL_JOB, "result": {"parameters": {}}}},
        422,
    ),
    (
        "API3 mass assignment",
        "dataset owner",
        "POST",
        "/v1/datasets",
        {"json": {**SMALL_JOB["dataset"], "owner": "x"}},
        422,
    ),
    (
        "API3 mass assignment",
        "dataset sha256",
        "POST",
        "/v1/datasets",
        {"json": {**SMALL_JOB["dataset"], "sha256": "0" * 64}},
        422,
    ),
    (
        "API4 resources",
        "body over the limit",
        "POST",
        "/v1/datasets",
        {"json": {"x": [1.0] * 30000, "y": [1.0] * 30000}},
        413,
    ),
    (
        "API4 resources",
        "points over the limit",
        "POST",
        "/v1/jobs",
        {"json": {"dataset": {"x": [1.0] * 1001, "y": [1.0] * 1001}}},
        422,
    ),
    (
        "API4 resources",
        "epochs over the limit",
        "POST",
        "/v1/jobs",
        {"json": {**SMALL_JOB, "hyperparameters": {"batch_size": 2, "epochs": 1_000_001}}},
        422,
    ),
    (
        "API4 resources",
        "points x epochs over the limit",
        "POST",
        "/v1/jobs",
        {"json": {"dataset": sine_points(1000), "hyperparameters": {"epochs": 500_001}}},
        422,
    ),
    ("API4 resources", "JSON nested absurdly deep", "POST", "/v1/jobs", raw_json(deep(50_000)), 400),
    ("API4 resources", "dataset JSON nested absurdly deep", "POST", "/v1/datasets", raw_json(deep(50_000)), 400),
    (
        "API4 resources",
        "a 5,000-digit integer",
        "POST",
        "/v1/jobs",
        raw_json('{"dataset": {"x": [1' + "0" * 5000 + '], "y": [1]}}'),
        400,
    ),
    (
        "API4 resources",
        "a 5,000-digit float",
        "POST",
        "/v1/jobs",
        raw_json('{"dataset": {"x": [1' + "0" * 5000 + '.0], "y": [1]}}'),
        400,  # out of the float range: not a JSON number this service can read
    ),
    ("API8 misconfiguration", "unparseable JSON", "POST", "/v1/jobs", raw_json("{"), 400),
    ("API8 misconfiguration", "NaN literal", "POST", "/v1/jobs", raw_json('{"dataset": {"x": [NaN], "y": [1]}}'), 422),
    ("API8 misconfiguration", "cursor from elsewhere", "GET", "/v1/jobs?cursor=c2VxOi0x", {}, 422),
]


@pytest.mark.parametrize(("item", "case", "method", "path", "kwargs", "status"), CASES, ids=[c[1] for c in CASES])
def test_abuse_case(
    server: Server, item: str, case: str, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    with client(server, server.key) as c:
        r = c.request(method, path, **kwargs)
    assert r.status_code == status, (item, case, r.text[:300])
    assert "detail" in r.json() and "Traceback" not in r.text


def test_api4_declared_length_over_the_limit_is_413_before_the_body_is_read(server: Server) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.key}\r\nContent-Length: 999999999"
        sock.sendall(head.encode() + b"\r\n\r\n{")
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")


def test_api1_bola_another_owners_objects_are_404(server: Server) -> None:
    other = server.new_key("eve")
    with client(server, server.key) as ann, client(server, other) as eve:
        ds = ann.post("/v1/datasets", json=SMALL_JOB["dataset"]).json()["id"]
        job = ann.post("/v1/jobs", json={"dataset_id": ds, "hyperparameters": {"batch_size": 2}}).json()["id"]
        wait_for(ann, job, "succeeded")
        for method, path, body in [
            ("GET", f"/v1/jobs/{job}", None),
            ("GET", f"/v1/jobs/{job}/result", None),
            ("POST", f"/v1/jobs/{job}/cancel", None),
            ("POST", f"/v1/jobs/{job}/predict", {"x": [1.0]}),
            ("GET", f"/v1/datasets/{ds}", None),
            ("DELETE", f"/v1/datasets/{ds}", None),
            ("POST", "/v1/jobs", {"dataset_id": ds}),
        ]:
            assert eve.request(method, path, json=body).status_code == 404, (method, path)
        assert all(job not in eve.get(p).text for p in ("/v1/jobs", "/v1/jobs?status=succeeded", "/v1/datasets"))
        assert ann.get(f"/v1/datasets/{ds}").status_code == 200  # still there


def test_api2_broken_authentication(server: Server) -> None:
    key = server.new_key("mallory")
    attempts = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {key}"},
        {"Authorization": f"Bearer {key.upper()}"},
        {"Authorization": f"Bearer {key}x"},
        {"Authorization": f"Bearer {hashlib.sha256(key.encode()).hexdigest()}"},  # the stored hash is no key
    ]
    for headers in attempts:
        with client(server, **headers) as c:
            r = c.get("/v1/jobs")
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer", headers
    with client(server) as c:
        assert c.get(f"/v1/jobs?api_key={key}").status_code == 401  # keys are not taken from the URL
    with client(server, key) as c:
        assert c.get("/v1/jobs").status_code == 200
        prefix = key[:10]
        listed = tinytrain("keys", "list", env=server.env, cwd=server.workdir)
        assert prefix in listed and key not in listed and hashlib.sha256(key.encode()).hexdigest() not in listed
        tinytrain("keys", "revoke", prefix, env=server.env, cwd=server.workdir)
        assert c.get("/v1/jobs").status_code == 401  # at once


def test_api4_quota_of_active_jobs_holds_under_concurrent_submits(server: Server) -> None:
    key = server.new_key("quota")
    body = {"dataset": sine_points(1000), "hyperparameters": FOREVER}
    with client(server, key) as c:
        with ThreadPoolExecutor(10) as pool:
            statuses = list(pool.map(lambda _: c.post("/v1/jobs", json=body).status_code, range(10)))
        assert sorted(statuses) == [202] * 3 + [429] * 7
        assert "limit" in c.post("/v1/jobs", json=body).json()["detail"]
        active = c.get("/v1/jobs").json()["items"]
        assert len(active) == 3
        for job in active:
            c.post(f"/v1/jobs/{job['id']}/cancel")
        for job in active:
            wait_for(c, job["id"], "cancelled")
        assert c.post("/v1/jobs", json=SMALL_JOB).status_code == 202  # room again


def test_idempotent_dataset_upload_makes_one_object_under_concurrency(server: Server) -> None:
    with client(server, server.key, **{"Idempotency-Key": "upload-1"}) as c:
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda _: c.post("/v1/datasets", json=SMALL_JOB["dataset"]), range(8)))
        assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
        assert len({r.json()["id"] for r in responses}) == 1
        other = c.post("/v1/datasets", json={"x": [5.0], "y": [5.0]})
        assert other.status_code == 422 and "Idempotency-Key" in other.text


def test_a_diverged_job_has_no_nan_anywhere(server: Server) -> None:
    points = sine_points(200)
    points["y"] = [v * 1e3 for v in points["y"]]
    with client(server, server.key) as c:
        job = c.post(
            "/v1/jobs", json={"dataset": points, "hyperparameters": {"learning_rate": 1e6, "epochs": 50}}
        ).json()
        wait_for(c, job["id"], "failed")
        for path in (f"/v1/jobs/{job['id']}", "/v1/jobs", f"/v1/jobs/{job['id']}/result"):
            assert_all_finite(c.get(path).text)


def test_api4_rate_limit_per_key_with_retry_after(make_server: Callable[..., Server]) -> None:
    # Per day: the 40 requests fall in one window of the sliding-window counter, which counts
    # exactly within a window (across a window's end it weighs the previous window's count).
    server = make_server(rate_limit="20/day")
    other = server.new_key("other")
    with client(server, server.key) as c, client(server, other) as o:
        statuses = [c.get("/v1/jobs").status_code for _ in range(40)]
        assert statuses.count(200) == 20 and statuses.count(429) == 20
        limited = c.get("/v1/jobs")
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert o.get("/v1/jobs").status_code == 200  # per key: another key is not limited


def server_errors() -> list[tuple[str, str, int]]:
    return [(r.request.method, str(r.request.url)[:80], r.status_code) for r in seen if r.status_code >= 500]


def assert_no_5xx_and_no_secret_in_logs(server: Server) -> None:
    assert seen and not server_errors(), server_errors()
    logs = "".join(p.read_text() for p in server.workdir.glob("serve-*.log"))
    assert server.key not in logs.split("\n", 2)[2]  # only the first-start notice shows it
    assert hashlib.sha256(server.key.encode()).hexdigest() not in logs
    assert not [r for r in seen if server.key in r.text]  # no response carries a key


def test_responses_so_far_had_no_5xx() -> None:
    assert seen and not server_errors(), server_errors()
