"""Schemathesis against the live server's /openapi.json, with a key, all checks, bounded in time."""

import subprocess
from pathlib import Path

from tests.support.cli import BIN
from tests.support.server import Server

ROOT = Path(__file__).resolve().parents[2]


def test_schemathesis_finds_no_failure(shared_server: Server, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "--config-file",
            str(ROOT / "schemathesis.toml"),
            "run",
            f"{shared_server.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {shared_server.key}",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--max-time",
            "90",
            "--generation-deterministic",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "Tested: 20" in done.stdout  # every operation of /openapi.json was exercised
