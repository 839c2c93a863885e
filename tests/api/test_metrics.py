"""GET /metrics against real processes: `serve` with its local pool (one HTTP process and
several), a Celery worker's own metrics port, and the metrics token. Read back with
prometheus_client's own parser, as Prometheus would read it."""

import collections
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.celery import Stack
from tests.support.client import wait_for
from tests.support.data import sine_points
from tests.support.keys import bearer
from tests.support.ports import free_port
from tests.support.server import Server, server_env

ROOT = Path(__file__).resolve().parents[2]
LATENCY = "tinytrain_http_request_duration_seconds_count"


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called name that carry these labels (0 when there is none)."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def scrape(url: str, headers: dict[str, str] | None = None) -> str:
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def eventually(url: str, check: Callable[[str], bool], headers: dict[str, str] | None = None) -> str:
    """A scrape for which check holds: the database's gauges are at most a second old, and a run
    counts its end just after the API shows it."""
    deadline = time.monotonic() + 10
    while True:
        text = scrape(url, headers)
        if check(text):
            return text
        assert time.monotonic() < deadline, text
        time.sleep(0.2)


def submit(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body, headers={"Prefer": "wait=60"})
    assert response.status_code in (200, 202), response.text
    found: dict[str, Any] = response.json()
    return found


def wait_sweep(client: httpx.Client, sweep_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        sweep: dict[str, Any] = client.get(f"/v1/sweeps/{sweep_id}").json()
        if sweep["status"] not in ("queued", "running"):
            return sweep
        assert time.monotonic() < deadline, sweep
        time.sleep(0.05)


def statuses(client: httpx.Client, path: str) -> dict[str, float]:
    """Each status's count of the owner's jobs or sweeps, as the API lists them."""
    items = client.get(path, params={"limit": 100}).json()["items"]
    counts = collections.Counter(item["status"] for item in items)
    return {status: float(counts[status]) for status in ("queued", "running", "succeeded", "failed", "cancelled")}


def gauges(text: str, name: str) -> dict[str, float]:
    return {
        status: sample(text, name, status=status)
        for status in ("queued", "running", "succeeded", "failed", "cancelled")
    }


def test_metrics_count_trainings_and_samples_and_match_the_api(make_server: Callable[..., Server]) -> None:
    server = make_server()
    n, epochs = 50, 40
    before = scrape(server.url)  # open without a key, as /healthz
    assert sample(before, "tinytrain_trainings_total") == 0 and sample(before, "tinytrain_model_samples_total") == 0
    assert (
        sample(before, "tinytrain_ready", check="database") == 1
        and sample(before, "tinytrain_ready", check="queue") == 1
    )
    with server.client() as c:
        job = submit(c, "/v1/jobs", {"dataset": sine_points(n), "hyperparameters": {"epochs": epochs}})
        assert job["status"] == "succeeded"
        text = eventually(server.url, lambda t: sample(t, "tinytrain_trainings_total", kind="job") == 1)
        assert sample(text, "tinytrain_trainings_total", kind="job", outcome="succeeded", error_code="") == 1
        assert sample(text, "tinytrain_model_samples_total", kind="job") == n * epochs

        # A sweep counts each trial, and each trial's samples.
        grid = {"learning_rate": [0.1, 0.3, 0.5]}
        sweep = submit(
            c, "/v1/sweeps", {"dataset": sine_points(n), "hyperparameters": {"epochs": epochs}, "grid": grid}
        )
        assert wait_sweep(c, sweep["id"])["status"] == "succeeded"
        text = eventually(server.url, lambda t: sample(t, "tinytrain_trainings_total", kind="trial") == 3)
        assert sample(text, "tinytrain_trainings_total", kind="trial", outcome="succeeded") == 3
        assert sample(text, "tinytrain_model_samples_total", kind="sweep") == 3 * n * epochs

        # A long job cancelled while it runs: counted as cancelled, with the samples it trained.
        long = c.post("/v1/jobs", json={"dataset": sine_points(n), "hyperparameters": {"epochs": 1_000_000}}).json()
        wait_for(c, long["id"], "running", epochs_completed=1)
        assert c.post(f"/v1/jobs/{long['id']}/cancel").status_code in (200, 202)
        cancelled = wait_for(c, long["id"], "cancelled")
        text = eventually(server.url, lambda t: sample(t, "tinytrain_trainings_total", outcome="cancelled") == 1)
        trained = epochs + cancelled["progress"]["epochs_completed"]
        assert sample(text, "tinytrain_model_samples_total", kind="job") == n * trained

        # The status gauges are the database's: what the API lists.
        jobs, sweeps = statuses(c, "/v1/jobs"), statuses(c, "/v1/sweeps")
        text = eventually(server.url, lambda t: gauges(t, "tinytrain_jobs") == jobs)
        assert gauges(text, "tinytrain_sweeps") == sweeps
        assert {q: sample(text, "tinytrain_queue_depth", queue=q) for q in ("gpu", "cpu", "train")} == dict.fromkeys(
            ("gpu", "cpu", "train"), 0
        )
        assert sample(text, "tinytrain_queue_oldest_age_seconds") == 0

        # Latency by route template: the job route, never a path with its id.
        assert c.get(f"/v1/jobs/{job['id']}").status_code == 200
        assert c.get("/v1/jobs/job_0123456789abcdef01234567").status_code == 404
        assert c.get(f"/nowhere/{job['id']}").status_code == 404
    text = scrape(server.url)
    route = "/v1/jobs/{job_id}"
    assert sample(text, LATENCY, route=route, method="GET", status="2xx") >= 1
    assert sample(text, LATENCY, route=route, method="GET", status="4xx") >= 1
    assert sample(text, LATENCY, route="/v1/jobs", method="POST", status="2xx") == 2
    assert sample(text, LATENCY, route="unmatched", method="GET", status="4xx") == 1
    assert sample(text, "tinytrain_http_request_duration_seconds_bucket", route=route, le="+Inf") >= 2
    routes = {s.labels.get("route") for f in text_string_to_metric_families(text) for s in f.samples}
    assert all(r is None or "{" in r or "_" not in r for r in routes), routes  # templates, no ids
    for object_id in (job["id"], sweep["id"], long["id"], "job_0123456789abcdef01234567"):
        assert object_id not in text
    assert server.key not in text and "default" not in text  # no key, no owner

    # Every metric that the alert rules and the docs name is one the service exports.
    families = list(text_string_to_metric_families(text))
    exported = {f.name for f in families} | {s.name for f in families for s in f.samples}
    for doc in (ROOT / "monitoring" / "alerts.yml", ROOT / "docs" / "metrics.md"):
        named = set(re.findall(r"\btinytrain_[a-z_]+", doc.read_text()))
        assert named and named <= exported, (doc.name, named - exported)


def test_metrics_add_up_over_serve_processes(tmp_path: Path) -> None:
    # The operator's directory, kept as it is: its files show which processes answered.
    metrics_dir = tmp_path / "metrics"
    env = {**server_env(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    server = Server(tmp_path, env, args=("--processes", "2"))
    server.start()
    try:
        n, epochs = 30, 20
        with server.client() as c:
            for seed in range(4):
                job = submit(c, "/v1/jobs", {"dataset": sine_points(n, seed), "hyperparameters": {"epochs": epochs}})
                assert job["status"] == "succeeded"
        eventually(server.url, lambda t: sample(t, "tinytrain_trainings_total") == 4)

        # Scrapes side by side, each on a new connection, until both HTTP processes answered some.
        with ThreadPoolExecutor(8) as pool:
            for _ in range(20):
                texts = list(pool.map(lambda _: scrape(server.url), range(16)))
                for text in texts:
                    assert sample(text, "tinytrain_trainings_total", kind="job", outcome="succeeded") == 4
                    assert sample(text, "tinytrain_model_samples_total", kind="job") == 4 * n * epochs
                    assert sample(text, LATENCY, route="/v1/jobs", method="POST") == 4
                if len(list(metrics_dir.glob("histogram_*.db"))) >= 2:
                    break
        assert len(list(metrics_dir.glob("histogram_*.db"))) == 2  # one per HTTP process: both served
        assert len(list(metrics_dir.glob("counter_*.db"))) >= 2  # and the pool's processes counted
    finally:
        server.stop()


def test_metrics_token_guards_metrics_and_never_spends_an_api_key(make_server: Callable[..., Server]) -> None:
    server = make_server(metrics_token="metrics-secret-123", rate_limit="3/minute")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "metrics-secret-123"}, bearer(server.key)):
        refused = httpx.get(f"{server.url}/metrics", headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert "tinytrain_" not in refused.text
    for _ in range(5):  # more scrapes than the key's requests
        assert "tinytrain_jobs" in scrape(server.url, {"Authorization": "Bearer metrics-secret-123"})
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    with server.client() as c:  # the key's limit is untouched by the scrapes
        assert [c.get("/v1/jobs").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_celery_worker_serves_its_counters_on_its_port(tmp_path: Path, postgres_url: str) -> None:
    port, token = free_port(), "worker-metrics-token"
    settings = {"database_url": postgres_url, "metrics_token": token}
    stack = Stack.create(tmp_path, settings, worker_args=("--concurrency", "1", "--metrics-port", str(port)))
    auth = {"Authorization": f"Bearer {token}"}
    try:
        stack.start(workers=0)
        n, epochs = 40, 25
        with stack.server.client() as c:
            job_id = c.post("/v1/jobs", json={"dataset": sine_points(n), "hyperparameters": {"epochs": epochs}}).json()
            job_id = job_id["id"]
            # No worker yet: the job waits in the queue of its device (auto: train).
            text = eventually(stack.server.url, lambda t: sample(t, "tinytrain_queue_depth", queue="train") == 1, auth)
            assert sample(text, "tinytrain_queue_depth", queue="gpu") == 0
            assert sample(text, "tinytrain_jobs", status="queued") == 1
            time.sleep(1.2)
            aged = scrape(stack.server.url, auth)
            assert sample(aged, "tinytrain_queue_oldest_age_seconds", queue="train") >= 1

            stack.add_worker()
            assert wait_for(c, job_id, "succeeded")["status"] == "succeeded"
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/metrics").status_code == 401
        assert httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        text = eventually(url, lambda t: sample(t, "tinytrain_trainings_total") == 1, auth)
        assert sample(text, "tinytrain_trainings_total", kind="job", outcome="succeeded") == 1
        assert sample(text, "tinytrain_model_samples_total", kind="job") == n * epochs
        # The runs were the worker's: serve counted none, and its gauges say the queue is empty.
        served = eventually(stack.server.url, lambda t: sample(t, "tinytrain_queue_depth") == 0, auth)
        assert sample(served, "tinytrain_trainings_total") == 0
        assert sample(served, "tinytrain_jobs", status="succeeded") == 1
    finally:
        stack.stop()


def test_the_cli_leaves_prometheus_client_unimported() -> None:
    # `serve` sets PROMETHEUS_MULTIPROC_DIR before anything imports prometheus_client, which
    # reads it once, on import: an import from the cli's modules would break the sums.
    code = "import sys, tinytrain.cli; sys.exit('prometheus_client' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
