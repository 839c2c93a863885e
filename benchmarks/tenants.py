"""Tenants benchmark: what one owner's heavy use, within its rate limit, costs another owner.

    python -m benchmarks.tenants [--database sqlite|postgresql] [--seconds 20] [--tree PATH]

Starts `tinytrain serve` with the service's default settings (its rate limit too: 50 requests a
second per key), then, for each phase, measures another owner's `GET /v1/jobs/{id}` (one request
every 50 ms) and `/healthz` (every 100 ms) from this process, while a load runs in a process of
its own:
- idle: no load;
- streams: one key holds 150 event streams on a finished job of a million epochs (a stream that
  ends, its whole history replayed, is opened again);
- grid: one key sends a sweep of a million trials (a 7.9 MB grid), again and again;
- points: four clients read a 4M-point dataset's points, again and again.
It prints a Markdown table: p50, p99 and max of each, and serve's resident memory above its
level before the phases (its peak during each). Everything shares this machine's cores.
--tree serves another checkout's source (an earlier tinytrain, for a figure to compare with).
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

from benchmarks.service import client
from tests.support.databases import fresh_database
from tests.support.server import Server, server_env

STREAMS = 150
# A million epochs in seconds (one mini-batch an epoch), with a validation history: 16 MB of history.
FINISHED = {"learning_rate": 0.01, "batch_size": 8, "epochs": 1_000_000, "validation_fraction": 0.2}
POINTS = 4_000_000
TRIALS = 1_000_000


async def _streams(url: str, key: str, job_id: str, stop: Callable[[], bool]) -> None:
    async with client(url, key, connections=STREAMS) as session:

        async def hold() -> None:
            while not stop():
                async with session.get(f"/v1/jobs/{job_id}/events") as r:
                    if r.status == 429:
                        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                        continue
                    async for _ in r.content.iter_chunked(1 << 16):
                        if stop():
                            return

        await asyncio.gather(*(hold() for _ in range(STREAMS)))


async def _grid(url: str, key: str, job_id: str, stop: Callable[[], bool]) -> None:
    body = json.dumps({"dataset": {"x": [0.0, 1.0], "y": [0.0, 1.0]}, "grid": {"seed": list(range(TRIALS))}})
    async with client(url, key, connections=2) as session:

        async def send() -> None:
            while not stop():
                headers = {"Content-Type": "application/json"}
                async with session.post("/v1/sweeps", data=body.encode(), headers=headers) as r:
                    assert r.status in (422, 429), r.status
                    await r.read()

        await asyncio.gather(send(), send())


async def _points(url: str, key: str, dataset_id: str, stop: Callable[[], bool]) -> None:
    async with client(url, key, connections=4) as session:

        async def read() -> None:
            while not stop():
                async with session.get(f"/v1/datasets/{dataset_id}/points") as r:
                    assert r.status in (200, 429), r.status
                    async for _ in r.content.iter_chunked(1 << 16):
                        pass

        await asyncio.gather(*(read() for _ in range(4)))


LOADS = {"streams": _streams, "grid": _grid, "points": _points}


def _load(kind: str, url: str, key: str, target: str, seconds: float) -> None:
    """One phase's load, in a process of its own, for about seconds."""
    deadline = time.monotonic() + seconds
    asyncio.run(LOADS[kind](url, key, target, lambda: time.monotonic() > deadline))


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@contextmanager
def probing(server: Server, key: str, job_id: str) -> Iterator[dict[str, list[float]]]:
    """Within: another owner's job read every 50 ms, /healthz every 100 ms (seconds each took),
    serve's resident memory every 200 ms (MB)."""
    assert server.process is not None
    pid = server.process.pid
    found: dict[str, list[float]] = {"job": [], "healthz": [], "rss": []}
    done = threading.Event()

    def every(interval: float, sample: Callable[[], None]) -> None:
        while not done.is_set():
            started = time.perf_counter()
            sample()
            time.sleep(max(0.0, interval - (time.perf_counter() - started)))

    def timed(name: str, request: Callable[[], httpx.Response]) -> Callable[[], None]:
        def sample() -> None:
            started = time.perf_counter()
            r = request()
            found[name].append(time.perf_counter() - started)
            assert r.status_code == 200, (name, r.status_code, r.text[:200])

        return sample

    with (
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c,
        httpx.Client(base_url=server.url, timeout=60) as h,
    ):
        probes = [
            threading.Thread(target=every, args=(0.05, timed("job", lambda: c.get(f"/v1/jobs/{job_id}")))),
            threading.Thread(target=every, args=(0.1, timed("healthz", lambda: h.get("/healthz")))),
            threading.Thread(target=every, args=(0.2, lambda: found["rss"].append(rss_mb(pid)))),
        ]
        for probe in probes:
            probe.start()
        try:
            yield found
        finally:
            done.set()
            for probe in probes:
                probe.join()


def _ms(values: list[float], q: float) -> float:
    return float(np.quantile(values, q)) * 1000


def setup(server: Server) -> tuple[str, str, str, str, str]:
    """Keys of the two owners, the other's job, the heavy owner's finished long job and big dataset."""
    other, heavy = server.new_key("other"), server.new_key("heavy")
    with server.client(other) as c:
        body = {"dataset": {"x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 0.0]}, "hyperparameters": {"epochs": 5}}
        job_id = c.post("/v1/jobs", json=body, headers={"Prefer": "wait=30"}).json()["id"]
    with server.client(heavy) as c:
        rng = np.random.default_rng(0)
        x = rng.uniform(-3, 3, 10)
        finished = {"dataset": {"x": x.tolist(), "y": np.sin(x).tolist()}, "hyperparameters": FINISHED}
        long_id = c.post("/v1/jobs", json=finished).json()["id"]
        csv = "x,y\n" + "".join(f"{i * 1e-6:.6f},{(i % 1000) * 1e-3:.3f}\n" for i in range(POINTS))
        r = c.post("/v1/datasets", content=csv, headers={"Content-Type": "text/csv"}, timeout=300)
        assert r.status_code == 201, r.text
        while (job := c.get(f"/v1/jobs/{long_id}").json())["status"] != "succeeded":
            assert job["status"] in ("queued", "running"), job
            time.sleep(1)
    return other, heavy, job_id, long_id, r.json()["id"]


def run(server: Server, seconds: float) -> list[str]:
    other, heavy, job_id, long_id, dataset_id = setup(server)
    assert server.process is not None
    time.sleep(2)
    base = rss_mb(server.process.pid)
    rows = []
    for phase, target in (("idle", ""), ("streams", long_id), ("grid", ""), ("points", dataset_id)):
        load = None
        if phase != "idle":
            load = multiprocessing.get_context("spawn").Process(
                target=_load, args=(phase, server.url, heavy, target, seconds + 5)
            )
            load.start()
            time.sleep(5)  # the load under way
        with probing(server, other, job_id) as found:
            time.sleep(seconds)
        if load is not None:
            load.join()
        job, health = found["job"], found["healthz"]
        rows.append(
            f"| {phase} | {_ms(job, 0.5):.0f} | {_ms(job, 0.99):.0f} | {max(job) * 1000:.0f} | "
            f"{_ms(health, 0.99):.0f} | {max(health) * 1000:.0f} | {max(found['rss']) - base:+.0f} | {len(job)} |"
        )
        time.sleep(3)  # what the phase left to settle
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--tree", type=Path, help="serve this source tree instead of this checkout's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, fresh_database(args.database, Path(tmp)) as url:
        # The service's defaults: its rate limit, quotas and caps as an operator gets them.
        env = server_env(Path(tmp), database_url=url, rate_limit=None, auth_failure_limit=None)
        if args.tree is not None:
            env["PYTHONPATH"] = str(args.tree.resolve())
        server = Server(Path(tmp), env)
        server.start()
        try:
            rows = run(server, args.seconds)
        finally:
            server.stop()
    load = os.getloadavg()[0]
    served = f", serving {args.tree}" if args.tree else ""
    print(f"# tinytrain tenants benchmark ({os.cpu_count()} cores, {args.database}, load average {load:.1f}{served})\n")
    print("another owner's GET /v1/jobs/{id} and /healthz, ms; serve's memory above its level before, MB\n")
    print("| phase | job p50 | job p99 | job max | healthz p99 | healthz max | serve memory | reads |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
