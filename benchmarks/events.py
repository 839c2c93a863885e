"""Live events benchmark: what 100 open event streams cost the job reads of one serve process.

    python -m benchmarks.events [--streams 100] [--seconds 5]

Starts `tinytrain serve` (local executor, SQLite) with two jobs training, then measures
`GET /v1/jobs/{id}` requests per second over 16 connections (wrk when present, else aiohttp)
with no stream open, then with --streams streams open on the two running jobs, reading every
event as it comes, side by side in this one run. Everything shares this machine's cores: the
streams' client runs here too, and its CPU is taken from the service it measures.
"""

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import httpx

from benchmarks.service import RATE_LIMIT, client, read_rate
from tests.support.data import sine_points
from tests.support.server import Server, server_env

# Long enough that the two jobs train through both measurements.
LONG = {"learning_rate": 0.001, "batch_size": 1, "epochs": 1_000_000, "device": "cpu"}


def open_streams(url: str, key: str, job_ids: list[str], n: int, stop: threading.Event) -> dict[str, int]:
    """Open n streams (round-robin over job_ids) in a thread of their own; count events until stop."""
    counts = {"events": 0, "open": 0}

    async def stream(session: aiohttp.ClientSession, job_id: str) -> None:
        async with session.get(f"/v1/jobs/{job_id}/events", timeout=aiohttp.ClientTimeout(total=None)) as response:
            response.raise_for_status()
            counts["open"] += 1
            async for line in response.content:
                if line.startswith(b"event:"):
                    counts["events"] += 1

    async def run() -> None:
        async with client(url, key, connections=n) as session:
            tasks = [asyncio.create_task(stream(session, job_ids[k % len(job_ids)])) for k in range(n)]
            while not stop.is_set():
                await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    threading.Thread(target=asyncio.run, args=(run(),), daemon=True).start()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), server_env(Path(tmp), rate_limit=RATE_LIMIT))
        server.start()
        try:
            with server.client() as c:
                body = {"dataset": sine_points(2000), "hyperparameters": LONG}
                job_ids = [c.post("/v1/jobs", json=body).json()["id"] for _ in range(2)]
                while any(c.get(f"/v1/jobs/{j}").json()["status"] != "running" for j in job_ids):
                    time.sleep(0.1)
            read = f"{server.url}/v1/jobs/{job_ids[0]}"
            alone = read_rate(read, server.key, args.seconds)
            stop = threading.Event()
            counts = open_streams(server.url, server.key, job_ids, args.streams, stop)
            while counts["open"] < args.streams:
                time.sleep(0.1)
            before = counts["events"]
            beside = read_rate(read, server.key, args.seconds)
            events = counts["events"] - before
            stop.set()
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.key}"}) as c:
                for job_id in job_ids:
                    c.post(f"/v1/jobs/{job_id}/cancel")
        finally:
            server.stop()
    print(f"job reads (GET /v1/jobs/{{id}}), 16 connections, {args.seconds} s each, one serve process:\n")
    print("| open event streams | reads/s | events received/s | reads vs none |")
    print("|---:|---:|---:|---:|")
    print(f"| 0 | {alone:,.0f} | - | 1.00 |")
    print(f"| {args.streams} | {beside:,.0f} | {events / args.seconds:,.0f} | {beside / alone:.2f} |")


if __name__ == "__main__":
    main()
