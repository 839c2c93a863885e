"""Schemathesis against the live server's /openapi.json, with a key, all checks, bounded in time,
on each database the service runs on (PostgreSQL refuses values that SQLite stores)."""

import subprocess
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
# Schemathesis sends bad keys on purpose, far more than a client address may before its 429.
AUTH_FAILURES = "100000/second"


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    with (
        fresh_database(request.param, tmp_path) as url,
        serving(tmp_path, database_url=url, auth_failure_limit=AUTH_FAILURES, **LIMITS) as server,
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
