"""Fixtures that start the real things: a `tinytrain serve` process, fresh databases."""

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings

from tests.support.server import Server, server_env

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"

# CI replays the same examples every run; on a developer's machine hypothesis explores afresh.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


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
    server = Server(
        tmp, server_env(tmp, max_points="1000", max_epochs="100000", max_body_bytes="200000", max_predict_points="50")
    )
    server.start()
    yield server
    server.stop()
