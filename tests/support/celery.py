"""The Celery path as real processes: `tinytrain serve` (executor celery), `tinytrain worker`s and
a redis-server of their own."""

import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cli import BIN
from tests.support.redis import RedisServer
from tests.support.server import Server, server_env


@dataclass
class Worker:
    """A `tinytrain worker` process (with args), its log a worker-*.log file in workdir."""

    env: dict[str, str]
    workdir: Path
    args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it is ready to take tasks."""
        log = open(self.workdir / f"worker-{time.monotonic_ns()}.log", "w")
        self.process = subprocess.Popen(
            [str(BIN / "tinytrain"), "worker", *self.args],
            env=self.env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
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
    """serve (executor celery) + workers + a Redis of its own, all in workdir."""

    redis: RedisServer
    server: Server
    env: dict[str, str]
    workdir: Path
    worker_args: tuple[str, ...] = ()
    workers: list[Worker] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        workdir: Path,
        settings: Mapping[str, str | None],
        serve_args: tuple[str, ...] = (),
        worker_args: tuple[str, ...] = (),
    ) -> "Stack":
        """A stack not started yet: its serve and workers share server_env(workdir, **settings)."""
        redis_server = RedisServer(workdir)
        env = server_env(workdir, executor="celery", broker_url=redis_server.url, **settings)
        return cls(redis_server, Server(workdir, env, args=serve_args), env, workdir, worker_args)

    def start(self, workers: int) -> None:
        """Start Redis, then serve, then `workers` workers, each ready when this returns."""
        self.redis.start()
        self.server.start()
        for _ in range(workers):
            self.add_worker()

    def add_worker(self) -> Worker:
        worker = Worker(self.env, self.workdir, self.worker_args)
        worker.start()
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.server.stop()
        self.redis.stop()
