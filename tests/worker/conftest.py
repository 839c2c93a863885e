"""Real Redis servers and real `tinytrain worker` processes for the Celery tests."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.celery import Stack


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
