"""Service benchmark: tiny-job latency and throughput, and job reads beside a bare FastAPI endpoint.

    python -m benchmarks.service [--jobs N] [--serve-processes N]

Starts real processes on loopback: `tinytrain serve` with the local executor, then with Celery
(a redis-server of its own and 1, then 2 `tinytrain worker` processes with their defaults), and
for the read test a bare FastAPI app under the same uvicorn. A tiny job is 1,000 points sent
inline, 10 epochs. Clients run in this process on aiohttp; reads are driven by wrk (Debian
package `wrk`) when present. Everything shares this machine's cores: the load generator's CPU
is taken from the service it measures.
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np

from tests.support.celery import Stack
from tests.support.cli import BIN
from tests.support.data import tiny_job
from tests.support.keys import bearer
from tests.support.ports import free_port
from tests.support.server import Server, server_env, wait_ready

RATE_LIMIT = "1000000/second"  # one key makes all the load here


def encoded_tiny_job(rng: np.random.Generator) -> bytes:
    """A tiny job's body, encoded ahead: the client's JSON encoding is not the service's cost."""
    return json.dumps(tiny_job(1000, rng, epochs=10)).encode()


def client(url: str | None, key: str | None, connections: int = 16) -> aiohttp.ClientSession:
    """The load generator's HTTP client: aiohttp, which takes a fifth of the CPU httpx takes per
    request (on 2 cores the client's CPU is taken from the service it measures)."""
    return aiohttp.ClientSession(
        url, headers=bearer(key) if key else {}, connector=aiohttp.TCPConnector(limit=connections)
    )


async def submit_and_wait(session: aiohttp.ClientSession, body: bytes, poll: float = 0.002) -> float:
    """Seconds from sending the job to seeing it succeeded (polling every `poll` seconds)."""
    start = time.perf_counter()
    async with session.post("/v1/jobs", data=body, headers={"Content-Type": "application/json"}) as response:
        job_id = (await response.json())["id"]
    while True:
        async with session.get(f"/v1/jobs/{job_id}") as response:
            status = (await response.json())["status"]
        if status == "succeeded":
            return time.perf_counter() - start
        if status not in ("queued", "running"):
            raise RuntimeError(f"job {job_id} ended {status}")
        await asyncio.sleep(poll)


async def latency(url: str, key: str, n: int) -> list[float]:
    rng = np.random.default_rng(0)
    bodies = [encoded_tiny_job(rng) for _ in range(n)]
    async with client(url, key) as session:
        return [await submit_and_wait(session, body) for body in bodies]


async def throughput(url: str, key: str, n: int, clients: int) -> float:
    """Jobs per second with `clients` concurrent clients, each submitting and awaiting jobs.

    They poll every 50 ms, as a client waiting for results would (and is still told within a
    tenth of a second): at 2 ms the polls of many clients, not the jobs, load the server."""
    rng = np.random.default_rng(1)
    bodies = [encoded_tiny_job(rng) for _ in range(n)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    async with client(url, key, connections=clients) as session:

        async def worker() -> None:
            while not queue.empty():
                await submit_and_wait(session, queue.get_nowait(), poll=0.05)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return n / (time.perf_counter() - start)


def read_rate(url: str, key: str | None, seconds: int = 5) -> float:
    """GET requests per second on url (with key, when given) over 16 connections."""
    if shutil.which("wrk"):
        flags = ["-H", f"Authorization: Bearer {key}"] if key else []
        args = ["wrk", "-t1", "-c16", f"-d{seconds}s", *flags, url]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if non_2xx:
            raise RuntimeError(f"{non_2xx.group(1)} failed reads on {url}")
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    async def run() -> float:
        count, deadline = 0, time.perf_counter() + seconds
        async with client(None, key) as session:

            async def loop() -> None:
                nonlocal count
                while time.perf_counter() < deadline:
                    async with session.get(url) as response:
                        response.raise_for_status()
                        await response.read()
                    count += 1

            await asyncio.gather(*(loop() for _ in range(16)))
        return count / seconds

    return asyncio.run(run())


def jobs_rows(url: str, key: str, n_jobs: int, label: str) -> None:
    asyncio.run(latency(url, key, 10))  # warm-up
    lat = sorted(asyncio.run(latency(url, key, 100)))
    p50, p95 = statistics.median(lat), lat[94]
    print(f"| {label} | tiny job submit-to-succeeded | p50 {p50 * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms | < 50 ms |")
    for clients in (8, 16, 32):
        rate = asyncio.run(throughput(url, key, n_jobs, clients))
        measure = f"tiny jobs/s, {clients} concurrent clients polling every 50 ms"
        print(f"| {label} | {measure} | {rate:.0f} jobs/s | >= 100 |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=300, help="jobs in each throughput run")
    parser.add_argument("--serve-processes", type=int, default=1, help="tinytrain serve --processes")
    args = parser.parse_args()
    print(f"# tinytrain service benchmark ({os.cpu_count()} cores, loopback, SQLite)\n")
    print("| executor | measure | figure | target |\n|---|---|---|---|")
    serve_args = ("--processes", str(args.serve_processes))

    work = Path(tempfile.mkdtemp(prefix="tinytrain-bench-"))
    server = Server(work, server_env(work, rate_limit=RATE_LIMIT), args=serve_args)
    server.start()
    # The same uvicorn defaults as serve (access log included), its log to a file too.
    bare_port = free_port()
    bare_url = f"http://127.0.0.1:{bare_port}"
    bare_app = [str(BIN / "uvicorn"), "--app-dir", str(Path(__file__).parents[1]), "benchmarks.bare_app:app"]
    bare_workers = ["--workers", str(args.serve_processes)]  # served the same way as serve
    with open(work / "bare.log", "w") as log:
        bare = subprocess.Popen(
            [*bare_app, "--port", str(bare_port), *bare_workers],
            env=server.env,
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        jobs_rows(server.url, server.key, args.jobs, "local (2 processes)")
        wait_ready(f"{bare_url}/bare/x", bare, work / "bare.log")
        job_id = httpx.get(f"{server.url}/v1/jobs", headers=bearer(server.key)).json()["items"][0]["id"]
        ours = read_rate(f"{server.url}/v1/jobs/{job_id}", server.key)
        for path, kind in (("bare", "a bare `def` FastAPI endpoint"), ("bare-async", "a bare `async def` one")):
            base = read_rate(f"{bare_url}/{path}/{job_id}", None)
            target = ">= 0.70" if path == "bare" else "FastAPI's floor, for scale"
            print(
                f"| local | GET /v1/jobs/{{id}} vs {kind} | {ours:.0f} vs {base:.0f} req/s, "
                f"ratio {ours / base:.2f} | {target} |"
            )
    finally:
        server.stop()
        bare.terminate()
        bare.wait()

    for workers in (1, 2):
        stack = Stack.create(Path(tempfile.mkdtemp(prefix="tinytrain-bench-")), {"rate_limit": RATE_LIMIT}, serve_args)
        try:
            stack.start(workers)  # workers with `tinytrain worker`'s defaults
            # Each as `tinytrain worker` starts on this machine: one training thread per core.
            label = f"celery ({workers} worker{'s' if workers > 1 else ''}, {os.cpu_count()} threads each)"
            jobs_rows(stack.server.url, stack.server.key, args.jobs, label)
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
