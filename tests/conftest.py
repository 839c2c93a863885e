"""Fixtures that start the real things: a `tinytrain serve` process, fresh databases."""

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from hypothesis import settings

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"

# CI replays the same examples every run; on a developer's machine hypothesis explores afresh.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    name = f"tinytrain_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store's tests run on both: a SQLite file and the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


def tinytrain(*args: str, env: dict[str, str], cwd: Path) -> str:
    """Run a tinytrain command to completion; its stdout."""
    done = subprocess.run(
        [str(BIN / "tinytrain"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class Server:
    """A real `tinytrain serve` process on a free port, and the key it printed on first start."""

    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    key: str = ""
    process: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.workdir / f"serve-{time.monotonic_ns()}.log"
        with open(log, "w") as out:
            command = [str(BIN / "tinytrain"), "serve", "--port", str(self.port), *self.args]
            self.process = subprocess.Popen(
                command, env=self.env, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise TimeoutError(f"serve did not become ready:\n{log.read_text()}")
        if not self.key:  # the first start made a key and printed it after this line
            lines = log.read_text().splitlines()
            self.key = lines[lines.index(next(x for x in lines if x.startswith("No API key existed"))) + 1].strip()

    def stop(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(timeout=30)

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key or self.key}"}, timeout=30)

    def new_key(self, owner: str) -> str:
        return tinytrain("keys", "create", "--owner", owner, env=self.env, cwd=self.workdir).strip()


def server_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYTRAIN_")}
    env["TINYTRAIN_DATABASE_URL"] = f"sqlite:///{tmp_path / 'tinytrain.db'}"
    env["TINYTRAIN_RATE_LIMIT"] = "100000/second"  # tests that are about the limit set their own
    env.update({f"TINYTRAIN_{k.upper()}": v for k, v in settings.items()})
    return env


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers with settings: make_server(max_points="10")."""
    started: list[Server] = []

    def make(**settings: str) -> Server:
        server = Server(tmp_path, server_env(tmp_path, **settings))
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for a module of read-mostly tests, with small limits to provoke."""
    tmp = tmp_path_factory.mktemp("serve")
    server = Server(tmp, server_env(tmp, max_points="1000", max_epochs="100000", max_body_bytes="200000",
                                    max_predict_points="50"))  # fmt: skip
    server.start()
    yield server
    server.stop()
