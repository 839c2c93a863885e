"""docker-compose.yml: validated by the real Compose v2 binary, and its services' own commands,
environments and health checks run natively against a local PostgreSQL and a redis-server
started with the compose file's own command (there is no Docker engine here)."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
import yaml  # type: ignore[import-untyped]  # no stubs installed; only read here

from tests.support.cli import BIN, tinytrain
from tests.support.client import wait_for
from tests.support.data import sine_points
from tests.support.keys import bearer
from tests.support.ports import free_port
from tests.support.server import clean_env

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
MONITORING = ROOT / "monitoring"
VARIABLES = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text()))  # what the file interpolates
SECRETS = {"POSTGRES_PASSWORD": "compose-test-secret", "REDIS_PASSWORD": "compose-redis-secret"}
TINYTRAIN_SERVICES = ("migrate", "api", "worker", "worker-cpu")


def compose(
    *args: str, env_file: Path | None = None, variables: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """The binary run with SECRETS, overridden by variables (None: unset); none of the file's
    variables come from this process, and env_file stands in for a .env beside the file."""
    # The binary itself: the package's Python wrapper exits 0 whatever the binary says.
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin is not None
    binary = Path(spec.origin).with_name("docker-compose")
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update({k: v for k, v in {**SECRETS, **(variables or {})}.items() if v is not None})
    return subprocess.run(
        [str(binary), "-f", str(COMPOSE_FILE), "--env-file", str(env_file or os.devnull), "--profile", "cpu", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def services(env_file: Path | None = None, **variables: str | None) -> dict[str, Any]:
    done = compose("config", "--format", "json", env_file=env_file, variables=variables)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)["services"])


def test_compose_file_is_valid_and_refuses_an_empty_secret() -> None:
    assert compose("config", "-q").returncode == 0
    for secret in SECRETS:
        for missing in (None, ""):
            refused = compose("config", "-q", variables={secret: missing})
            assert refused.returncode != 0 and secret in refused.stderr


def test_env_example_lists_every_variable_with_the_file_s_defaults(tmp_path: Path) -> None:
    text = ENV_EXAMPLE.read_text()
    listed = re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE)
    assert sorted(listed) == sorted(VARIABLES)
    # As shipped, the secrets are empty: compose refuses it until they are filled in.
    assert compose("config", "-q", env_file=ENV_EXAMPLE, variables=dict.fromkeys(SECRETS)).returncode != 0
    # Every optional setting uncommented gives the stack that the file's own defaults give.
    uncommented = tmp_path / ".env"
    uncommented.write_text(re.sub(r"^# ([A-Z][A-Z0-9_]*=)", r"\1", text, flags=re.MULTILINE))
    assert services(env_file=uncommented) == services()


def test_compose_services_are_wired_for_faults() -> None:
    s = services()
    assert {"redis", "postgres", "migrate", "api", "worker", "worker-cpu"} <= set(s)
    assert "--appendonly" in s["redis"]["command"] and "noeviction" in s["redis"]["command"]
    device = s["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert s["worker-cpu"]["profiles"] == ["cpu"]
    assert all("healthcheck" in s[name] for name in ("redis", "postgres", "api", "worker", "worker-cpu"))
    assert s["api"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert s["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert s["worker"]["build"]["args"]["TORCH_INDEX"].endswith("cu128")
    assert s["worker-cpu"]["build"]["args"]["TORCH_INDEX"].endswith("/cpu")
    # The Dockerfile's EXTRAS: the service everywhere ([server], its default), its GPU engine beside CUDA.
    assert s["worker"]["build"]["args"]["EXTRAS"] == "gpu" and "EXTRAS" not in s["worker-cpu"]["build"]["args"]


def option(command: list[str], name: str) -> str:
    """The value after name in a command line."""
    return command[command.index(name) + 1]


def test_compose_monitoring_profile_scrapes_the_stack() -> None:
    done = compose("--profile", "monitoring", "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    s = json.loads(done.stdout)["services"]
    assert s["prometheus"]["profiles"] == s["flower"]["profiles"] == ["monitoring"]
    assert not {"prometheus", "flower"} & set(services())  # only with the profile
    for name in ("prometheus", "flower"):
        assert [p["host_ip"] for p in s[name]["ports"]] == ["127.0.0.1"], name
        assert int(s[name]["deploy"]["resources"]["limits"]["memory"]) > 0, name
    broker = urlsplit(s["flower"]["environment"]["CELERY_BROKER_URL"])
    assert (broker.hostname, broker.port, broker.password) == ("redis", 6379, SECRETS["REDIS_PASSWORD"])
    assert "--port=5555" in s["flower"]["command"]
    mount = next(v for v in s["prometheus"]["volumes"] if v["target"] == "/etc/prometheus")
    assert Path(mount["source"]) == MONITORING and mount["read_only"]

    # Prometheus scrapes each service where it listens: the api's port, the workers' metrics port.
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs["tinytrain-api"]["dns_sd_configs"][0]
    assert api["names"] == ["api"] and str(api["port"]) == option(s["api"]["command"], "--port")
    workers = jobs["tinytrain-worker"]["dns_sd_configs"][0]
    assert set(workers["names"]) == {"worker", "worker-cpu"}
    for name in workers["names"]:
        assert option(s[name]["command"], "--metrics-port") == str(workers["port"])
        assert option(s[name]["command"], "--metrics-host") == "0.0.0.0"
    assert jobs["flower"]["static_configs"][0]["targets"] == ["flower:5555"]
    for rules in config["rule_files"]:
        groups = yaml.safe_load((MONITORING / Path(rules).relative_to("/etc/prometheus")).read_text())["groups"]
        assert all(rule["alert"] and rule["expr"] for group in groups for rule in group["rules"])


def test_compose_is_hardened() -> None:
    s = services()
    # Published on loopback only, unless TINYTRAIN_BIND says otherwise.
    published = {name: service.get("ports", []) for name, service in s.items()}
    assert [(p["host_ip"], p["published"], p["target"]) for p in published["api"]] == [("127.0.0.1", "8000", 8000)]
    assert all(p["host_ip"] == "127.0.0.1" for ports in published.values() for p in ports)
    wide = services(TINYTRAIN_BIND="0.0.0.0", TINYTRAIN_PORT="8080")["api"]["ports"]
    assert [(p["host_ip"], p["published"]) for p in wide] == [("0.0.0.0", "8080")]
    # A memory limit on every service.
    for name, service in s.items():
        assert int(service["deploy"]["resources"]["limits"]["memory"]) > 0, name
    # Redis: a password (which every broker URL carries), a memory bound, no eviction.
    command = s["redis"]["command"]
    assert option(command, "--requirepass") == SECRETS["REDIS_PASSWORD"]
    assert option(command, "--maxmemory") == "256mb" and option(command, "--maxmemory-policy") == "noeviction"
    assert services(REDIS_MAXMEMORY="1gb")["redis"]["command"][command.index("--maxmemory") + 1] == "1gb"
    assert s["redis"]["environment"]["REDISCLI_AUTH"] == SECRETS["REDIS_PASSWORD"]
    for name in TINYTRAIN_SERVICES:
        assert urlsplit(s[name]["environment"]["TINYTRAIN_BROKER_URL"]).password == SECRETS["REDIS_PASSWORD"]
    # Workers have a health check of their own (the api's asks its /readyz).
    for name in ("worker", "worker-cpu"):
        assert s[name]["healthcheck"]["test"][0] == "CMD" and "ping" in " ".join(s[name]["healthcheck"]["test"])
    # No service makes a key, so none is printed into `docker compose logs`: serve is told not to,
    # and keys are made with `docker compose run --rm api tinytrain keys create` (the header says so).
    for name, service in s.items():
        command = service.get("command") or []
        assert "keys" not in command, name
        if "serve" in command:
            assert "--no-first-key" in command, name
    assert "docker compose run --rm api tinytrain keys create --owner NAME" in COMPOSE_FILE.read_text()


def native(service: dict[str, Any], database_url: str, redis_port: int, port: int) -> tuple[list[str], dict[str, str]]:
    """The service's command and environment, with compose-network hosts and ports made loopback."""
    env = dict(service["environment"])
    db = urlsplit(env["TINYTRAIN_DATABASE_URL"])
    assert (db.hostname, db.port) == ("postgres", 5432)
    local_db = urlsplit(database_url)
    env["TINYTRAIN_DATABASE_URL"] = urlunsplit((db.scheme, local_db.netloc, local_db.path, "", ""))
    broker = urlsplit(env["TINYTRAIN_BROKER_URL"])
    assert (broker.hostname, broker.port) == ("redis", 6379)
    netloc = broker.netloc.replace("@redis:6379", f"@127.0.0.1:{redis_port}")
    env["TINYTRAIN_BROKER_URL"] = urlunsplit((broker.scheme, netloc, broker.path, "", ""))
    command = [str(BIN / service["command"][0]), *service["command"][1:]]
    # A worker's metrics port is a free one here: 9100 may be taken on this machine.
    loopback = {"0.0.0.0": "127.0.0.1", "8000": str(port), "9100": str(free_port())}
    command = [loopback.get(arg, arg) for arg in command]
    return command, {**clean_env(), **env}


def start_redis(service: dict[str, Any], port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """redis-server with the service's command, on a loopback port, its files in workdir."""
    server = shutil.which(service["command"][0])
    assert server is not None, "redis-server is not installed (.ci/run installs it)"
    process = subprocess.Popen(
        [server, *service["command"][1:], "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password=SECRETS["REDIS_PASSWORD"])
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            assert time.monotonic() < deadline and process.poll() is None, "redis-server did not start"
            time.sleep(0.05)


def healthcheck(service: dict[str, Any], env: dict[str, str], shims: Path) -> int:
    """The exit status of the service's health check run here: python is this one, and the
    commands in shims (on PATH first) stand in for those that would find a compose host."""
    test = service["healthcheck"]["test"]
    argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    argv = [str(BIN / "python") if argv[0] == "python" else argv[0], *argv[1:]]
    env = {**env, "PATH": f"{shims}{os.pathsep}{env['PATH']}"}
    return subprocess.run(argv, env=env, capture_output=True, timeout=60).returncode


def test_compose_services_run_natively_and_train_a_job(tmp_path: Path, postgres_url: str) -> None:
    s = services()
    redis_port, port = free_port(), free_port()
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "redis-cli").write_text(f'#!/bin/sh\nexec {shutil.which("redis-cli")} -p {redis_port} "$@"\n')
    (shims / "redis-cli").chmod(0o755)
    running = [start_redis(s["redis"], redis_port, tmp_path)]
    try:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=redis_port).ping()
        assert redis.Redis(port=redis_port, password=SECRETS["REDIS_PASSWORD"]).config_get("maxmemory") == {
            "maxmemory": str(256 * 2**20)
        }
        assert healthcheck(s["redis"], {**clean_env(), **s["redis"]["environment"]}, shims) == 0
        assert healthcheck(s["redis"], clean_env(), shims) != 0  # without the password: NOAUTH

        command, env = native(s["migrate"], postgres_url, redis_port, port)
        assert subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, timeout=120).returncode == 0
        logs = {name: tmp_path / f"{name}.log" for name in ("api", "worker-cpu")}
        for name, log in logs.items():
            command, env = native(s[name], postgres_url, redis_port, port)
            with open(log, "w") as out:
                running.append(subprocess.Popen(command, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 90
        while (
            "ready." not in logs["worker-cpu"].read_text()
            or "Application startup complete" not in logs["api"].read_text()
        ):
            assert time.monotonic() < deadline and all(p.poll() is None for p in running), logs["api"].read_text()
            time.sleep(0.2)
        worker_env = native(s["worker-cpu"], postgres_url, redis_port, port)[1]
        began = time.monotonic()
        assert healthcheck(s["worker-cpu"], worker_env, shims) == 0, "the ready worker answers its health check"
        print(f"worker health check: {time.monotonic() - began:.2f} s")

        # The operator's key, as `docker compose run --rm api tinytrain keys create --owner NAME` makes it.
        key = tinytrain(
            "keys",
            "create",
            "--owner",
            "operator",
            env=native(s["api"], postgres_url, redis_port, port)[1],
            cwd=tmp_path,
        ).strip()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=bearer(key)) as c:
            assert c.get("/readyz").status_code == 200
            body = {"dataset": sine_points(300), "hyperparameters": {"epochs": 30}}
            job = wait_for(c, c.post("/v1/jobs", json=body).json()["id"], "succeeded", timeout=60)
        assert job["device"] == "cpu" and job["result"]["epochs_completed"] == 30
        api_log = logs["api"].read_text()
        assert "No API key" not in api_log and "tt_" not in api_log  # no key in what `compose logs` shows
        assert "rate limit storage unavailable" not in api_log  # the limiter reached Redis with the password

        worker = running.pop()
        worker.terminate()
        worker.wait(timeout=30)
        assert healthcheck(s["worker-cpu"], worker_env, shims) != 0, "a stopped worker fails its health check"
    finally:
        for process in running:
            process.terminate()
            process.wait(timeout=30)
