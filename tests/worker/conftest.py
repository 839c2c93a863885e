"""Real Redis servers and real `tinytrain worker` processes for the Celery tests."""

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.conftest import BIN, Server, free_port, server_env


@dataclass
class RedisServer:
    """A redis-server of the test's own on a free port, so the test may stop and start it."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server is not None, "redis-server is not installed (.ci/run installs it)"
        self.process = subprocess.Popen([server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", str(self.workdir)],
                                        stdout=subprocess.DEVNULL)  # fmt: skip
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@dataclass
class Worker:
    env: dict[str, str]
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.workdir / f"worker-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen([str(BIN / "tinytrain"), "worker", "--concurrency", "1"], env=self.env,
                                        cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 60
        while "ready." not in Path(log.name).read_text():
            assert self.process.poll() is None and time.monotonic() < deadline, Path(log.name).read_text()
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Stack:
    """serve (executor celery) + workers + a Redis of its own, on a fresh PostgreSQL database."""

    redis: RedisServer
    server: Server
    env: dict[str, str]
    workdir: Path
    workers: list[Worker] = field(default_factory=list)

    def add_worker(self) -> Worker:
        worker = Worker(self.env, self.workdir)
        worker.start()
        self.workers.append(worker)
        return worker


@pytest.fixture
def celery_stack(tmp_path: Path, postgres_url: str) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(workers: int = 1, **settings: str) -> Stack:
        redis_server = RedisServer(tmp_path)
        redis_server.start()
        env = server_env(tmp_path, executor="celery", broker_url=redis_server.url, database_url=postgres_url,
                         **settings)  # fmt: skip
        stack = Stack(redis_server, Server(tmp_path, env), env, tmp_path)
        stacks.append(stack)
        stack.server.start()
        for _ in range(workers):
            stack.add_worker()
        return stack

    yield make
    for stack in stacks:
        for worker in stack.workers:
            worker.stop()
        stack.server.stop()
        stack.redis.stop()
