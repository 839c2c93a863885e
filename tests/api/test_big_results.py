"""The largest result a job can have, read by ten clients at once, must not stall the event loop:
/healthz stays fast, and a job read stays small (its histories are only in /result)."""

import http.client
import json
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from tests.support.client import wait_for
from tests.support.data import SMALL_JOB
from tests.support.server import Server

MAX_EPOCHS = 1_000_000  # TINYTRAIN_MAX_EPOCHS's default: the longest history a job can have
READERS = 10  # half read the whole /result, half the job
SECONDS = 10
POLL_INTERVAL = 0.01
MB = 1_000_000


def read_in_a_loop(port: int, key: str, job_id: str, until: float) -> dict[str, dict[str, int]]:
    """READERS threads reading the result and the job until time.monotonic() (one clock for every
    process of the machine) reaches until: the reads of each path and its largest body. A process
    of its own, so that receiving some 20 MB a read costs the GIL of neither the server nor the
    process that times /healthz."""

    def read(path: str) -> tuple[str, int, int]:
        reads, largest = 0, 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while time.monotonic() < until:
                conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
                response = conn.getresponse()
                body = response.read()
                assert response.status == 200, body[:500]
                reads, largest = reads + 1, max(largest, len(body))
        finally:
            conn.close()
        return path, reads, largest

    paths = [f"/v1/jobs/{job_id}/result", f"/v1/jobs/{job_id}"]
    stats: dict[str, dict[str, int]] = {"reads": dict.fromkeys(paths, 0), "largest": dict.fromkeys(paths, 0)}
    with ThreadPoolExecutor(READERS) as threads:
        for path, reads, largest in threads.map(read, [paths[i % 2] for i in range(READERS)]):
            stats["reads"][path] += reads
            stats["largest"][path] = max(stats["largest"][path], largest)
    return stats


def healthz_latencies(port: int, busy: Callable[[], bool]) -> list[float]:
    """Seconds of each /healthz request, one every POLL_INTERVAL on one connection, while busy()."""
    latencies = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        while busy():
            began = time.perf_counter()
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read()) == {"status": "ok"}
            latencies.append(time.perf_counter() - began)
            time.sleep(POLL_INTERVAL)
    finally:
        conn.close()
    return latencies


def test_ten_clients_reading_the_largest_result_leave_healthz_fast(make_server: Callable[..., Server]) -> None:
    server = make_server(max_epochs=str(MAX_EPOCHS))
    with server.client() as c:
        longest = {**SMALL_JOB, "hyperparameters": {"batch_size": 4, "epochs": MAX_EPOCHS}}
        too_long = {**SMALL_JOB, "hyperparameters": {"batch_size": 4, "epochs": MAX_EPOCHS + 1}}
        assert c.post("/v1/jobs", json=too_long).status_code == 422
        job_id = c.post("/v1/jobs", json=longest).json()["id"]
        job = wait_for(c, job_id, "succeeded", timeout=120)
        assert job["result"]["epochs_completed"] == MAX_EPOCHS
        whole = c.get(f"/v1/jobs/{job_id}/result")
        assert whole.status_code == 200 and len(whole.json()["loss_history"]) == MAX_EPOCHS

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(int).result()  # the process is up before the clock starts
        readers = pool.submit(read_in_a_loop, server.port, server.key, job_id, time.monotonic() + SECONDS)
        latencies = sorted(healthz_latencies(server.port, lambda: not readers.done()))
        stats = readers.result()

    result_path, job_path = f"/v1/jobs/{job_id}/result", f"/v1/jobs/{job_id}"
    p99, worst = latencies[int(len(latencies) * 0.99)], latencies[-1]
    figures = (
        f"/healthz p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {worst * 1000:.1f} ms over {len(latencies)} requests; reads {stats['reads']}, "
        f"result {stats['largest'][result_path] / MB:.1f} MB, job {stats['largest'][job_path]} bytes"
    )
    print(figures)
    assert stats["reads"][result_path] >= READERS // 2 and stats["reads"][job_path] >= READERS // 2, figures
    assert stats["largest"][result_path] == len(whole.content), figures
    assert stats["largest"][job_path] < MB, figures
    assert len(latencies) >= 100 and p99 < 0.1, figures
