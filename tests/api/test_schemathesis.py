"""Schemathesis against the live server's /openapi.json, with a key, all checks, bounded in time,
on each database the service runs on (PostgreSQL refuses values that SQLite stores)."""

import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cli import BIN
from tests.support.databases import fresh_database
from tests.support.server import Server, serving

ROOT = Path(__file__).resolve().parents[2]
# Small limits, for the generated requests to cross them.
LIMITS = {"max_points": "1000", "max_epochs": "100000", "max_body_bytes": "200000", "max_predict_points": "50"}
# Lifted for the fuzzer, so that its requests reach the routes rather than a 429: its key's rate
# limit (as server_env does), the failed authentications of its address (it sends bad keys on
# purpose), and the owner's quotas, which its many queued jobs would fill.
LIFTED = {
    "rate_limit": "100000/second",
    "auth_failure_limit": "100000/second",
    "max_active_jobs_per_owner": "100000",
    "max_storage_bytes_per_owner": str(2**40),
    "max_streams_per_owner": "100000",
    "max_waiting_per_owner": "100000",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    with (
        fresh_database(request.param, tmp_path) as url,
        serving(tmp_path, database_url=url, **LIFTED, **LIMITS) as server,
    ):
        yield server


def test_schemathesis_finds_no_failure(server: Server, tmp_path: Path) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    operations = sum(1 for path in schema["paths"].values() for method in path if method != "parameters")
    report = tmp_path / "report"
    done = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "--config-file",
            str(ROOT / "schemathesis.toml"),
            "run",
            f"{server.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {server.key}",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--max-time",
            "90",
            "--request-timeout",
            "70",  # Prefer: wait may hold an answer up to 60 s
            "--generation-deterministic",
            "--report",
            "har",
            "--report-dir",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert f"Tested: {operations}" in done.stdout, done.stdout[-3000:]  # every operation was exercised
    # Its requests reached the routes: few were refused for a limit (a 429).
    [har] = report.glob("har-*.json")
    statuses = [entry["response"]["status"] for entry in json.loads(har.read_text())["log"]["entries"]]
    assert len(statuses) > 500 and statuses.count(429) < len(statuses) / 100, Counter(statuses)
