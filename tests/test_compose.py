"""docker-compose.yml: validated by the real Compose v2 binary, and its services' own commands and
environments run natively against local Redis and PostgreSQL (there is no Docker engine here)."""

import importlib.util
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from tests.support.cli import BIN
from tests.support.client import wait_for
from tests.support.data import sine_points
from tests.support.keys import bearer
from tests.support.ports import free_port
from tests.support.redis import RedisServer
from tests.support.server import clean_env, first_key

ROOT = Path(__file__).resolve().parents[1]


def compose(*args: str, password: str | None = "compose-test-secret") -> subprocess.CompletedProcess[str]:
    # The binary itself: the package's Python wrapper exits 0 whatever the binary says.
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin is not None
    binary = Path(spec.origin).with_name("docker-compose")
    env = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    if password is not None:
        env["POSTGRES_PASSWORD"] = password
    return subprocess.run(
        [str(binary), "-f", str(ROOT / "docker-compose.yml"), "--profile", "cpu", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def services() -> dict[str, Any]:
    done = compose("config", "--format", "json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)["services"])


def test_compose_file_is_valid_and_refuses_an_empty_secret() -> None:
    assert compose("config", "-q").returncode == 0
    for missing in (None, ""):
        refused = compose("config", "-q", password=missing)
        assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr


def test_compose_services_are_wired_for_faults() -> None:
    s = services()
    assert {"redis", "postgres", "migrate", "api", "worker", "worker-cpu"} <= set(s)
    assert "--appendonly" in s["redis"]["command"] and "noeviction" in s["redis"]["command"]
    device = s["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert s["worker-cpu"]["profiles"] == ["cpu"]
    assert all("healthcheck" in s[name] for name in ("redis", "postgres", "api"))
    assert s["api"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert s["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert s["worker"]["build"]["args"]["TORCH_INDEX"].endswith("cu128")
    assert s["worker-cpu"]["build"]["args"]["TORCH_INDEX"].endswith("/cpu")


def native(service: dict[str, Any], database_url: str, broker_url: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The service's command and environment, with compose-network hosts and ports made loopback."""
    env = dict(service["environment"])
    db = urlsplit(env["TINYTRAIN_DATABASE_URL"])
    assert (db.hostname, db.port) == ("postgres", 5432)
    local_db = urlsplit(database_url)
    env["TINYTRAIN_DATABASE_URL"] = urlunsplit((db.scheme, local_db.netloc, local_db.path, "", ""))
    assert urlsplit(env["TINYTRAIN_BROKER_URL"]).hostname == "redis"
    env["TINYTRAIN_BROKER_URL"] = broker_url
    command = [str(BIN / service["command"][0]), *service["command"][1:]]
    command = [{"0.0.0.0": "127.0.0.1", "8000": str(port)}.get(arg, arg) for arg in command]
    return command, {**clean_env(), **env}


def test_compose_services_run_natively_and_train_a_job(tmp_path: Path, postgres_url: str) -> None:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    s = services()
    port = free_port()
    running: list[subprocess.Popen[bytes]] = []
    try:
        command, env = native(s["migrate"], postgres_url, redis_server.url, port)
        assert subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, timeout=120).returncode == 0
        logs = {name: tmp_path / f"{name}.log" for name in ("api", "worker-cpu")}
        for name, log in logs.items():
            command, env = native(s[name], postgres_url, redis_server.url, port)
            with open(log, "w") as out:
                running.append(subprocess.Popen(command, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 90
        while (
            "ready." not in logs["worker-cpu"].read_text()
            or "Application startup complete" not in logs["api"].read_text()
        ):
            assert time.monotonic() < deadline and all(p.poll() is None for p in running), logs["api"].read_text()
            time.sleep(0.2)
        key = first_key(logs["api"].read_text())
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=bearer(key)) as c:
            assert c.get("/readyz").status_code == 200
            job_id = c.post("/v1/jobs", json={"dataset": sine_points(300), "hyperparameters": {"epochs": 30}}).json()[
                "id"
            ]
            job = wait_for(c, job_id, "succeeded", timeout=60)
        assert job["device"] == "cpu" and job["result"]["epochs_completed"] == 30
    finally:
        for process in running:
            process.terminate()
            process.wait(timeout=30)
        redis_server.stop()
