"""Fixtures that start the real things: a `tinytrain serve` process, fresh databases."""

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.celery import Stack
from tests.support.databases import fresh_database
from tests.support.server import Server, serving

# CI replays the same examples every run; on a developer's machine hypothesis explores afresh.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    with fresh_database("postgresql", tmp_path) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store's tests run on both: a SQLite file and the real PostgreSQL."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def each_database_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per database for a module of read-mostly tests, with the default limits."""
    tmp = tmp_path_factory.mktemp("serve")
    with fresh_database(request.param, tmp) as url, serving(tmp, database_url=url) as server:
        yield server


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers with settings: make_server(max_points="10")."""
    with ExitStack() as started:
        yield lambda **settings: started.enter_context(serving(tmp_path, **settings))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A serve of the module's own on the defaults (SQLite, the local executor); a module whose
    tests need other settings defines its own."""
    with serving(tmp_path_factory.mktemp("serve")) as started:
        yield started


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for a module of read-mostly tests, with small limits to provoke."""
    tmp = tmp_path_factory.mktemp("serve")
    with serving(tmp, max_points="1000", max_epochs="100000", max_body_bytes="200000", max_predict_points="50") as s:
        yield s


@pytest.fixture
def celery_stack(tmp_path: Path, postgres_url: str) -> Iterator[Callable[..., Stack]]:
    """Start stacks on the test's PostgreSQL database: celery_stack(workers=2, lease_seconds="2")."""
    stacks: list[Stack] = []

    def make(workers: int = 1, **settings: str) -> Stack:
        stack = Stack.create(tmp_path, {"database_url": postgres_url, **settings}, worker_args=("--concurrency", "1"))
        stacks.append(stack)
        stack.start(workers)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
