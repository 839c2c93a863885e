"""`tinytrain serve` as a real process on a free port: its environment, readiness and first key."""

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.cli import BIN
from tests.support.keys import bearer, new_key
from tests.support.ports import free_port


def clean_env() -> dict[str, str]:
    """This process's environment without its TINYTRAIN_ settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TINYTRAIN_")}


def server_env(workdir: Path, **settings: str | None) -> dict[str, str]:
    """The environment of a serve (or worker) on a SQLite file in workdir, with settings by name:
    server_env(tmp, max_points="10"); None leaves a setting at the service's default."""
    env = clean_env()
    env["TINYTRAIN_DATABASE_URL"] = f"sqlite:///{workdir / 'tinytrain.db'}"
    # Tests that are about these limits set their own.
    env["TINYTRAIN_RATE_LIMIT"] = "100000/second"
    env["TINYTRAIN_AUTH_FAILURE_LIMIT"] = "100000/minute"
    for name, value in settings.items():
        if value is None:
            env.pop(f"TINYTRAIN_{name.upper()}", None)
        else:
            env[f"TINYTRAIN_{name.upper()}"] = value
    return env


def wait_ready(
    url: str, process: subprocess.Popen[bytes] | None = None, log: Path | None = None, seconds: float = 120
) -> None:
    """Wait up to seconds for url to answer 200; the process serving it must not exit meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process is None or process.poll() is None, log.read_text() if log else url
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not become ready" + (f":\n{log.read_text()}" if log else ""))


def first_key(log: str) -> str:
    """The key serve made on its first start: it prints it on the line after this notice."""
    lines = log.splitlines()
    notice = next(i for i, line in enumerate(lines) if line.startswith("No API key existed"))
    return lines[notice + 1].strip()


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

    def start(self, ready: str = "/readyz", within: float = 120) -> None:
        """Start it and wait up to within seconds until ready (a path) answers 200."""
        log = self.workdir / f"serve-{time.monotonic_ns()}.log"
        with open(log, "w") as out:
            command = [str(BIN / "tinytrain"), "serve", "--port", str(self.port), *self.args]
            self.process = subprocess.Popen(
                command, env=self.env, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            wait_ready(f"{self.url}{ready}", self.process, log, within)
        except BaseException:
            self.stop(kill=True)  # a serve that never got ready is not left running
            raise
        if not self.key:  # the first start made a key and printed it
            self.key = first_key(log.read_text())

    def stop(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(timeout=30)

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=bearer(key or self.key), timeout=30)

    def new_key(self, owner: str) -> str:
        return new_key(owner, env=self.env, cwd=self.workdir)


@contextmanager
def serving(workdir: Path, **settings: str | None) -> Iterator[Server]:
    """A started serve on a SQLite file in workdir, with settings as server_env takes them; stopped
    afterwards."""
    server = Server(workdir, server_env(workdir, **settings))
    server.start()
    try:
        yield server
    finally:
        server.stop()
