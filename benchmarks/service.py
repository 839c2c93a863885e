"""Service benchmark: tiny-job latency and throughput, and job reads beside a bare FastAPI endpoint.

    python -m benchmarks.service [--jobs N] [--serve-processes N] [--baseline DIR]
    python -m benchmarks.service --baseline-tree DIR [--rounds N] [--jobs N] [--measure jobs reads big-result]

Starts real processes on loopback: `tinytrain serve` with the local executor, then with Celery
(a redis-server of its own and 1, then 2 `tinytrain worker` processes with their defaults), and
for the read test a bare FastAPI app under the same uvicorn. A tiny job is 1,000 points sent
inline, 10 epochs. Clients run in this process on aiohttp; reads are driven by wrk (Debian
package `wrk`) when present. Everything shares this machine's cores: the load generator's CPU
is taken from the service it measures.

--baseline DIR runs, first, a serve of an earlier tinytrain's source tree (say
`git worktree add /tmp/before <commit>`) beside this one: the earlier one polled, this one
waited on, in turns (the earlier code must run with this checkout's installed packages).

--baseline-tree DIR serves the same load from DIR's tree and this one, in turns, and only that,
the order of the two swapped each round, with their medians and ranges: tiny jobs (`--measure
jobs`: Prefer: wait, 1 client, then 16), job reads (`reads`), and /healthz's latency while ten
clients read the largest result a job can have (`big-result`, tests/api/test_big_results.py's
load). On a shared machine only such interleaved rounds compare two builds.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import aiohttp
import httpx
import numpy as np

from tests.api.test_big_results import MAX_EPOCHS, healthz_latencies, read_in_a_loop
from tests.support.celery import Stack
from tests.support.cli import BIN
from tests.support.data import SMALL_JOB, tiny_job
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


async def submit_and_wait(session: aiohttp.ClientSession, body: bytes, poll: float | None) -> float:
    """Seconds from sending the job to seeing it succeeded: polling every `poll` seconds, or
    (poll None) asking the service to answer when it ends (Prefer: wait)."""
    prefer = {"Prefer": "wait=60"} if poll is None else {}
    start = time.perf_counter()
    headers = {"Content-Type": "application/json", **prefer}
    async with session.post("/v1/jobs", data=body, headers=headers) as response:
        job = await response.json()
    while job["status"] in ("queued", "running"):
        if poll is not None:
            await asyncio.sleep(poll)
        async with session.get(f"/v1/jobs/{job['id']}", headers=prefer) as response:
            job = await response.json()
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job['id']} ended {job['status']}")
    return time.perf_counter() - start


async def latency(url: str, key: str, n: int, poll: float | None) -> list[float]:
    rng = np.random.default_rng(0)
    bodies = [encoded_tiny_job(rng) for _ in range(n)]
    async with client(url, key) as session:
        return [await submit_and_wait(session, body, poll) for body in bodies]


async def throughput(url: str, key: str, n: int, clients: int, poll: float | None) -> tuple[float, list[float]]:
    """(jobs per second, each job's seconds) with `clients` concurrent clients, each submitting
    and awaiting jobs one after another."""
    rng = np.random.default_rng(1)
    bodies = [encoded_tiny_job(rng) for _ in range(n)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    seconds: list[float] = []
    async with client(url, key, connections=clients) as session:

        async def worker() -> None:
            while not queue.empty():
                seconds.append(await submit_and_wait(session, queue.get_nowait(), poll))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return n / (time.perf_counter() - start), seconds


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


def _p(seconds: list[float], q: float) -> str:
    return f"{statistics.quantiles(seconds, n=100)[int(q) - 1] * 1e3:.1f} ms"


def cpu_seconds(pids: list[int]) -> float:
    """The CPU seconds that these processes and all their descendants (a serve's pool) have used
    so far, from Linux's /proc."""
    parent_and_ticks: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # exited meanwhile
                continue
            parent_and_ticks[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    counted, frontier = set(pids), list(pids)
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _) in parent_and_ticks.items() if ppid == parent and pid not in counted]
        counted.update(children)
        frontier += children
    return sum(parent_and_ticks[pid][1] for pid in counted if pid in parent_and_ticks) / os.sysconf("SC_CLK_TCK")


def jobs_rows(url: str, key: str, n_jobs: int, label: str, service: list[int], rounds: int = 3) -> None:
    """Tiny jobs awaited by polling (a GET every 2 ms alone, every 50 ms among 16 clients, as a
    client waiting for results would) and by Prefer: wait, side by side.

    The 16-client runs take turns, `rounds` times each: their jobs/s is the median (on a shared
    machine one run's rate moves by a third); beside it the CPU the service's processes
    (`service`: serve and any workers, with their children) spent per job, which moves less."""
    asyncio.run(latency(url, key, 10, None))  # warm-up
    for poll, how in ((0.002, "polling every 2 ms"), (None, "Prefer: wait")):
        lat = asyncio.run(latency(url, key, 100, poll))
        print(f"| {label} | tiny job submit-to-succeeded, 1 client {how} | p50 {_p(lat, 50)}, p95 {_p(lat, 95)} |")
    hows = ((0.05, "polling every 50 ms"), (None, "Prefer: wait"))
    runs: dict[str, list[tuple[float, list[float], float]]] = {how: [] for _, how in hows}
    for _ in range(rounds):
        for poll, how in hows:
            before = cpu_seconds(service)
            rate, lat = asyncio.run(throughput(url, key, n_jobs, 16, poll))
            runs[how].append((rate, lat, (cpu_seconds(service) - before) / n_jobs))
    rates, cpus = {}, {}
    for _, how in hows:
        rates[how] = statistics.median(rate for rate, _, _ in runs[how])
        cpus[how] = statistics.median(cpu for _, _, cpu in runs[how])
        lat = [s for _, seconds, _ in runs[how] for s in seconds]
        figure = (
            f"{rates[how]:.0f} jobs/s, p50 {_p(lat, 50)}, p95 {_p(lat, 95)}, service CPU {cpus[how] * 1e3:.1f} ms a job"
        )
        print(f"| {label} | tiny jobs, 16 clients {how} | {figure} |", flush=True)
    wait, poll_ = "Prefer: wait", "polling every 50 ms"
    ratio = f"{rates[wait] / rates[poll_]:.2f}x jobs/s, {cpus[wait] / cpus[poll_]:.2f}x CPU a job"
    print(f"| {label} | Prefer: wait vs polling (16 clients, median of {rounds} turns each) | {ratio} |", flush=True)


def against_baseline(baseline: Server, ours: Server, n_jobs: int, rounds: int = 3) -> None:
    """Tiny jobs on the baseline's serve by polling (every 2 ms alone, every 50 ms among 16
    clients) and on ours by Prefer: wait, in turns: jobs/s, p50, and each serve's CPU a job."""

    def turn(server: Server, poll: float | None, clients: int) -> tuple[float, list[float], float]:
        assert server.process is not None
        before = cpu_seconds([server.process.pid])
        if clients == 1:
            seconds = asyncio.run(latency(server.url, server.key, 100, poll))
            rate = len(seconds) / sum(seconds)
        else:
            rate, seconds = asyncio.run(throughput(server.url, server.key, n_jobs, clients, poll))
        return rate, seconds, (cpu_seconds([server.process.pid]) - before) / len(seconds)

    for server in (baseline, ours):
        asyncio.run(latency(server.url, server.key, 10, None))  # warm-up
    for clients, poll in ((1, 0.002), (16, 0.05)):
        runs: dict[str, list[tuple[float, list[float], float]]] = {"baseline": [], "ours": []}
        for _ in range(rounds):
            runs["baseline"].append(turn(baseline, poll, clients))
            runs["ours"].append(turn(ours, None, clients))
        rate, cpu, lat = {}, {}, {}
        for name, taken in runs.items():
            rate[name] = statistics.median(r for r, _, _ in taken)
            cpu[name] = statistics.median(c for _, _, c in taken)
            lat[name] = [s for _, seconds, _ in taken for s in seconds]
        figure = (
            f"{rate['baseline']:.0f} vs {rate['ours']:.0f} jobs/s ({rate['ours'] / rate['baseline']:.2f}x), "
            f"p50 {_p(lat['baseline'], 50)} vs {_p(lat['ours'], 50)}, "
            f"CPU a job {cpu['baseline'] * 1e3:.1f} vs {cpu['ours'] * 1e3:.1f} ms"
        )
        who = "1 client" if clients == 1 else f"{clients} clients"
        how = f"{who}, baseline polling every {poll * 1e3:.0f} ms vs Prefer: wait"
        print(f"| local | {how} (median of {rounds} turns each) | {figure} |", flush=True)


def tree_server(tree: Path | None, serve_args: tuple[str, ...]) -> Server:
    """A serve (not started) of tree's source (None: this checkout's) on a SQLite file of its own."""
    work = Path(tempfile.mkdtemp(prefix="tinytrain-bench-"))
    env = server_env(work, rate_limit=RATE_LIMIT, max_epochs=str(MAX_EPOCHS))
    if tree is not None:
        env["PYTHONPATH"] = str(tree)  # its packages before this checkout's
    return Server(work, env, args=serve_args)


Measure = Callable[[Server], dict[str, float]]


def _in_turns(servers: dict[str, Server], rounds: int, measures: list[Measure]) -> None:
    """Each measure on each server in turn, the order swapped each round, so that the two runs
    of a measure are seconds apart: a table row per figure with each server's median and range,
    and the median (and range) of the rounds' ratios of the last server's to the first's."""
    names = list(servers)
    taken: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in names}
    for i in range(rounds):
        for measure in measures:
            for name in names if i % 2 == 0 else names[::-1]:
                for figure, value in measure(servers[name]).items():
                    taken[name][figure].append(value)

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):.3g} ({min(values):.3g} to {max(values):.3g})"

    for figure in taken[names[0]]:
        cells = [spread(taken[name][figure]) for name in names]
        ratios = [b / a for a, b in zip(taken[names[0]][figure], taken[names[-1]][figure], strict=True)]
        print(f"| {figure} | {' | '.join(cells)} | {spread(ratios)} |", flush=True)


def side_by_side(servers: dict[str, Server], n_jobs: int, rounds: int, measured: list[str]) -> None:
    """Tiny jobs by Prefer: wait (30 with 1 client, n_jobs with 16: "jobs") and 2 s of job reads
    ("reads"), with serve's CPU (its pool's included) a job and a read, on each server in turns."""
    job_ids = {}
    for server in servers.values():
        asyncio.run(latency(server.url, server.key, 10, None))  # warm-up
        job_ids[server.url] = httpx.get(f"{server.url}/v1/jobs", headers=bearer(server.key)).json()["items"][0]["id"]

    def service(server: Server) -> list[int]:
        assert server.process is not None
        return [server.process.pid]

    def alone(server: Server) -> dict[str, float]:
        seconds = asyncio.run(latency(server.url, server.key, 30, None))
        return {"tiny job, 1 client, p50 ms": statistics.median(seconds) * 1e3}

    def sixteen(server: Server) -> dict[str, float]:
        before = cpu_seconds(service(server))
        rate, seconds = asyncio.run(throughput(server.url, server.key, n_jobs, 16, None))
        return {
            "tiny jobs, 16 clients, jobs/s": rate,
            "tiny jobs, 16 clients, p50 ms": statistics.median(seconds) * 1e3,
            "tiny jobs, 16 clients, serve's CPU ms a job": (cpu_seconds(service(server)) - before) / n_jobs * 1e3,
        }

    def job_reads(server: Server) -> dict[str, float]:
        before = cpu_seconds(service(server))
        rate = read_rate(f"{server.url}/v1/jobs/{job_ids[server.url]}", server.key, seconds=2)
        return {
            "GET /v1/jobs/{id}, 16 connections, req/s": rate,
            "GET /v1/jobs/{id}, serve's CPU us a read": (cpu_seconds(service(server)) - before) / (rate * 2) * 1e6,
        }

    measures = {"jobs": [alone, sixteen], "reads": [job_reads]}
    _in_turns(servers, rounds, [m for name in measured for m in measures[name]])


def big_result_side_by_side(servers: dict[str, Server], rounds: int, seconds: float = 5) -> None:
    """/healthz (one request every 10 ms) while ten clients read a job of MAX_EPOCHS epochs and
    its whole result for `seconds`, on each server in turns."""
    job_ids = {}
    for server in servers.values():
        with server.client() as c:
            body = {**SMALL_JOB, "hyperparameters": {"batch_size": 4, "epochs": MAX_EPOCHS}}
            job = c.post("/v1/jobs", json=body, headers={"Prefer": "wait=60"}).json()
            while job["status"] != "succeeded":
                assert job["status"] in ("queued", "running"), job
                job = c.get(f"/v1/jobs/{job['id']}", headers={"Prefer": "wait=60"}).json()
            job_ids[server.url] = job["id"]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        pool.submit(int).result()  # the process is up before any clock starts

        def readers_and_healthz(server: Server) -> dict[str, float]:
            until = time.monotonic() + seconds
            readers = pool.submit(read_in_a_loop, server.port, server.key, job_ids[server.url], until)
            latencies = sorted(healthz_latencies(server.port, lambda: not readers.done()))
            reads = readers.result()["reads"][f"/v1/jobs/{job_ids[server.url]}/result"]
            return {
                "/healthz beside 10 big-result readers, p50 ms": statistics.median(latencies) * 1e3,
                "/healthz beside 10 big-result readers, p99 ms": latencies[int(len(latencies) * 0.99)] * 1e3,
                "/healthz beside 10 big-result readers, max ms": latencies[-1] * 1e3,
                "whole results read a second (5 clients)": reads / seconds,
            }

        _in_turns(servers, rounds, [readers_and_healthz])


def waiting_threads(server: Server, clients: int = 100) -> tuple[int, int]:
    """serve's threads before and while `clients` requests wait (Prefer: wait) on a long job."""
    assert server.process is not None
    pid, body = (
        server.process.pid,
        json.dumps(
            {
                "dataset": {"x": [0.0, 1.0], "y": [0.0, 1.0]},
                "hyperparameters": {"epochs": 1_000_000, "batch_size": 1, "learning_rate": 1e-6},
            }
        ).encode(),
    )

    async def run() -> tuple[int, int]:
        async with client(server.url, server.key, connections=clients) as session:
            async with session.post("/v1/jobs", data=body, headers={"Content-Type": "application/json"}) as response:
                job_id = (await response.json())["id"]
            before = len(os.listdir(f"/proc/{pid}/task"))
            waits = [session.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=5"}) for _ in range(clients)]
            pending = [asyncio.ensure_future(w.__aenter__()) for w in waits]
            await asyncio.sleep(2)  # all of them waiting now
            during = len(os.listdir(f"/proc/{pid}/task"))
            for response in await asyncio.gather(*pending):
                response.release()
            async with session.post(f"/v1/jobs/{job_id}/cancel"):
                pass
            return before, during

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=300, help="jobs in each throughput run")
    parser.add_argument("--serve-processes", type=int, default=1, help="tinytrain serve --processes")
    parser.add_argument("--baseline", type=Path, help="an earlier tinytrain's source tree to poll beside this one")
    parser.add_argument("--baseline-tree", type=Path, help="a source tree to serve the same load beside this one")
    parser.add_argument("--rounds", type=int, default=8, help="turns of each server with --baseline-tree")
    parser.add_argument(
        "--measure", nargs="+", choices=["jobs", "reads", "big-result"], default=["jobs", "reads"], help="compared"
    )
    args = parser.parse_args()
    serve_args = ("--processes", str(args.serve_processes))
    if args.baseline_tree is not None:
        tree = args.baseline_tree.resolve()
        print(f"# {tree} vs {Path(__file__).parents[1]} ({os.cpu_count()} cores, loopback, SQLite)\n")
        print(f"| measure | {tree.name} | this tree | ratio, this tree's to {tree.name}'s |\n|---|---|---|---|")
        pair = {"baseline": tree_server(tree, serve_args), "ours": tree_server(None, serve_args)}
        try:
            for server in pair.values():
                server.start(within=600)  # a loaded machine takes minutes to warm up a pool
            if "big-result" in args.measure:
                big_result_side_by_side(pair, args.rounds)
            if {"jobs", "reads"} & set(args.measure):
                side_by_side(pair, args.jobs, args.rounds, [m for m in args.measure if m != "big-result"])
        finally:
            for server in pair.values():
                server.stop()
        return
    print(f"# tinytrain service benchmark ({os.cpu_count()} cores, loopback, SQLite)\n")
    print("| executor | measure | figure |\n|---|---|---|")

    if args.baseline is not None:
        servers = [tree_server(tree, serve_args) for tree in (args.baseline.resolve(), None)]
        try:
            for server in servers:
                server.start()
            against_baseline(servers[0], servers[1], args.jobs)
        finally:
            for server in servers:
                server.stop()

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
        assert server.process is not None
        jobs_rows(server.url, server.key, args.jobs, "local (2 processes)", [server.process.pid])
        before, during = waiting_threads(server)
        print(f"| local | serve's threads, idle vs 100 requests waiting (Prefer: wait) | {before} vs {during} |")
        wait_ready(f"{bare_url}/bare/x", bare, work / "bare.log")
        job_id = httpx.get(f"{server.url}/v1/jobs", headers=bearer(server.key)).json()["items"][0]["id"]
        ours = read_rate(f"{server.url}/v1/jobs/{job_id}", server.key)
        for path, kind in (("bare", "a bare `def` FastAPI endpoint"), ("bare-async", "a bare `async def` one")):
            base = read_rate(f"{bare_url}/{path}/{job_id}", None)
            print(
                f"| local | GET /v1/jobs/{{id}} vs {kind} | {ours:.0f} vs {base:.0f} req/s, ratio {ours / base:.2f} |"
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
            service = [p.pid for p in (stack.server.process, *(w.process for w in stack.workers)) if p is not None]
            jobs_rows(stack.server.url, stack.server.key, args.jobs, label, service)
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
