"""One owner never costs another, and no byte of a request is a 500: header bytes of any
encoding, values at the edge of a dtype or of the database's integers, names a plotting library
would read as markup. Real `tinytrain serve` processes on SQLite and PostgreSQL."""

import json
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import httpx
import numpy as np
import pytest
from httpx_sse import connect_sse

from tests.support.cli import tinytrain
from tests.support.client import wait_for
from tests.support.data import sine_points
from tests.support.server import Server

POINTS = {"x": [0.0, 1.0, 2.0, 3.0], "y": [0.0, 1.0, 0.0, 1.0]}
QUICK = {"batch_size": 2, "epochs": 30, "validation_fraction": 0.25}
WAIT = {"Prefer": "wait=30"}
SVG = "{http://www.w3.org/2000/svg}"
# Every byte a header value may hold that is not an ASCII digit, and some that int() reads as
# digits though they are none (latin-1's superscripts, and the UTF-8 of Arabic-Indic three).
ODD_BYTES = [bytes([b]) for b in range(0x21, 0x100) if not 0x30 <= b <= 0x39 and b not in b'"\x7f']
ODD_VALUES = [b"\xb2", b"1\xb9", b"\xd9\xa3", b"\xef\xbc\x91", b"1" * 200, b"9" * 11, b"-0", b"0x1", b"1 1"]


@pytest.fixture(scope="module")
def client(each_database_server: Server) -> Iterator[httpx.Client]:
    with each_database_server.client() as c:
        yield c


@pytest.fixture(scope="module")
def finished(client: httpx.Client) -> dict[str, Any]:
    """A succeeded job with a validation split, for the reads to provoke."""
    r = client.post("/v1/jobs", json={"dataset": POINTS, "hyperparameters": QUICK})
    assert r.status_code == 202, r.text
    return wait_for(client, r.json()["id"], "succeeded")


def test_header_bytes_of_any_encoding_are_a_400_never_a_500(client: httpx.Client, finished: dict[str, Any]) -> None:
    path = f"/v1/jobs/{finished['id']}"
    for i, value in enumerate([*ODD_BYTES, *ODD_VALUES]):
        body = {"dataset": POINTS, "hyperparameters": QUICK}
        prefer = {b"Prefer": b"wait=" + value}
        waits = [client.get(path, headers=prefer), client.post("/v1/jobs", json=body, headers=prefer)]
        for r in waits:
            assert r.status_code == 400 and "Prefer: wait" in r.json()["detail"], (value, r.status_code, r.text)
        with client.stream("GET", f"{path}/events", headers={b"Last-Event-ID": value}) as r:
            assert r.status_code == 400, (value, r.status_code)
        # Not a number by contract: kept as text, and a retry with it is the same request.
        key = {b"Idempotency-Key": (b"%d:" % i + value)[:200]}
        first, again = (client.post("/v1/jobs", json=body, headers=key) for _ in range(2))
        assert first.status_code == 202 and again.status_code == 200, (value, first.text, again.text)
        assert first.json()["id"] == again.json()["id"]
    assert client.get(path, headers={"Prefer": "wait=0"}).headers["Preference-Applied"] == "wait=0"


LAST_EVENT_IDS = ["0", "29", "30", "31", "2147463648", "2147483648", "4294967296", "9999999999"]


@pytest.mark.parametrize("last_event_id", LAST_EVENT_IDS)
def test_any_last_event_id_resumes_or_ends_the_stream_cleanly(
    client: httpx.Client, finished: dict[str, Any], last_event_id: str
) -> None:
    with connect_sse(client, "GET", f"/v1/jobs/{finished['id']}/events", headers={"Last-Event-ID": last_event_id}) as s:
        assert s.response.status_code == 200
        events = list(s.iter_sse())
    progress = [e.json() for e in events if e.event == "progress"]
    sent = min(int(last_event_id), 30)
    assert sum(len(p["loss"]) for p in progress) == 30 - sent
    assert events[-1].event == "status" and events[-1].json()["status"] == "succeeded"


def test_any_slice_of_a_result_is_a_200_and_empty_where_it_holds_no_epoch(
    client: httpx.Client, finished: dict[str, Any]
) -> None:
    path = f"/v1/jobs/{finished['id']}/result"
    whole = client.get(path).json()["loss_history"]
    edge = 2**31
    for start, stop, expected in [
        (10, 5, 0),
        (10, 10, 0),
        (29, 1, 0),
        (0, 1, 1),
        (29, 30, 1),
        (29, edge, 1),
        (30, edge, 0),
        (edge, edge, 0),
        (edge - 1, None, 0),
        (edge, 1, 0),
        (0, edge, 30),
    ]:
        params = {"start": start} if stop is None else {"start": start, "stop": stop}
        r = client.get(path, params=params)
        assert r.status_code == 200, (start, stop, r.text)
        got = r.json()
        assert got["loss_history"] == whole[start : stop if stop is not None else None], (start, stop)
        assert len(got["loss_history"]) == len(got["epochs"]) == expected
        r = client.get(path, params={**params, "max_points": 2})
        assert r.status_code == 200 and len(r.json()["loss_history"]) == min(2, expected), (start, stop)


F32_MAX = float(np.finfo(np.float32).max)
INIT = {"w11": 0.7, "w12": -1.1, "b11": 0.2, "b12": 0.4, "w21": 0.9, "w22": -0.6, "b2": 0.1}


def _counts(client: httpx.Client) -> list[int]:
    return [len(client.get(f"/v1/{kind}", params={"limit": 100}).json()["items"]) for kind in ("jobs", "sweeps")]


@pytest.mark.parametrize("name", ["w11", "b2"])
@pytest.mark.parametrize("value", [1e308, -1e39, float(np.nextafter(F32_MAX, np.inf, dtype=np.float64))])
def test_a_value_past_the_dtypes_range_is_a_422_naming_it_and_nothing_is_queued(
    client: httpx.Client, name: str, value: float
) -> None:
    before = _counts(client)
    float32 = {**QUICK, "dtype": "float32"}
    past = {**INIT, name: value}
    cases: list[tuple[str, dict[str, Any], list[str | int]]] = [
        ("/v1/jobs", {"hyperparameters": {**float32, "initial_parameters": past}}, ["hyperparameters"]),
        ("/v1/sweeps", {"hyperparameters": float32, "grid": {"initial_parameters": [INIT, past]}}, ["trials", 1]),
        ("/v1/jobs", {"hyperparameters": {**float32, "learning_rate": abs(value)}}, ["hyperparameters"]),
    ]
    for path, body, loc in cases:
        r = client.post(path, json={"dataset": POINTS, **body})
        assert r.status_code == 422, (path, body, r.text)
        [error] = r.json()["detail"]
        field = ["learning_rate"] if "learning_rate" in body["hyperparameters"] else ["initial_parameters", name]
        assert error["loc"] == ["body", *loc, *field] and "float32" in error["msg"], error
    assert _counts(client) == before
    # At the edge itself, and in float64, the same values train (to a finite result, or diverged).
    edge = {**float32, "initial_parameters": {**INIT, name: F32_MAX}}
    wide = {**QUICK, "dtype": "float64", "initial_parameters": {**INIT, name: value}}
    for hp in (edge, wide):
        r = client.post("/v1/jobs", json={"dataset": POINTS, "hyperparameters": hp}, headers=WAIT)
        assert r.status_code == 200 and r.json()["status"] in ("succeeded", "failed"), r.text
        assert r.json()["error"] is None or r.json()["error"]["code"] == "diverged", r.text


MARKUP = ["a $\\undefinedmacro$ b", "$\\frac{1}{$", "$x^{$", "{" * 200, "$$", "\\$x$ <b>&amp;</b> ]]> %s {0}"]


@pytest.mark.parametrize("name", MARKUP)
def test_a_name_is_text_in_the_plot_whatever_markup_it_holds(client: httpx.Client, name: str) -> None:
    r = client.post("/v1/jobs", json={"dataset": POINTS, "hyperparameters": QUICK, "name": name}, headers=WAIT)
    assert r.status_code == 200, r.text
    plot = client.get(f"/v1/jobs/{r.json()['id']}/plot.svg")
    assert plot.status_code == 200, plot.text
    title = ET.fromstring(plot.content).find(f".//{SVG}title")
    assert title is not None and title.text is not None and title.text.startswith(f"{name}: learning rate")


def test_the_plot_of_a_job_at_the_ends_of_float64_is_drawn(client: httpx.Client) -> None:
    """A GET never blames a body: such a plot was a 422 saying x[0] is not a finite number."""
    big = float(np.finfo(np.float64).max)
    for x, y in [([-1e308, 1e308], [1e308, -1e308]), ([-big, big], [big, -big]), ([big, big], [-big, 0.0])]:
        hp = {"batch_size": 1, "epochs": 5, "dtype": "float64"}
        r = client.post("/v1/jobs", json={"dataset": {"x": x, "y": y}, "hyperparameters": hp}, headers=WAIT)
        assert r.status_code == 200 and r.json()["result"] is not None, r.text
        plot = client.get(f"/v1/jobs/{r.json()['id']}/plot.svg")
        assert plot.status_code == 200, (x, y, plot.text)
        ET.fromstring(plot.content)


LONG = {"learning_rate": 0.001, "batch_size": 1, "epochs": 1_000_000, "device": "cpu"}  # trains past the test


def test_open_streams_and_waiting_requests_are_capped_per_owner_and_a_revoked_keys_streams_end(
    make_server: Callable[..., Server], database_url: str
) -> None:
    server = make_server(database_url=database_url, max_streams_per_owner="3", max_waiting_per_owner="2")
    ann_key, bob_key = server.new_key("ann"), server.new_key("bob")
    with server.client(ann_key) as ann, server.client(bob_key) as bob, ExitStack() as open_streams:
        job = ann.post("/v1/jobs", json={"dataset": sine_points(2000), "hyperparameters": LONG}).json()["id"]
        theirs = bob.post("/v1/jobs", json={"dataset": POINTS, "hyperparameters": QUICK}, headers=WAIT).json()["id"]
        wait_for(ann, job, "running")

        def stream(c: httpx.Client, job_id: str) -> Iterator[Any]:
            own = open_streams.enter_context(server.client(c.headers["Authorization"].removeprefix("Bearer ")))
            source = open_streams.enter_context(connect_sse(own, "GET", f"/v1/jobs/{job_id}/events"))
            assert source.response.status_code == 200
            return source.iter_sse()

        held = [stream(ann, job) for _ in range(3)]
        assert all(next(events).event in ("progress", "status") for events in held)
        over = ann.get(f"/v1/jobs/{job}/events")
        assert over.status_code == 429 and "3 open event streams is the limit per owner" in over.json()["detail"]
        assert list(stream(bob, theirs))[-1].event == "status"  # another owner's: theirs to open

        # Two requests of ann wait; a third is answered at once, its preference not applied.
        with ThreadPoolExecutor(2) as pool:
            waiting = [pool.submit(ann.get, f"/v1/jobs/{job}", headers={"Prefer": "wait=3"}) for _ in range(2)]
            time.sleep(1)
            started = time.monotonic()
            now = ann.get(f"/v1/jobs/{job}", headers={"Prefer": "wait=3"})
            assert time.monotonic() - started < 1 and now.status_code == 200
            assert "Preference-Applied" not in now.headers
            assert all(w.result().headers["Preference-Applied"] == "wait=3" for w in waiting)

        tinytrain("keys", "revoke", ann_key[:10], env=server.env, cwd=server.workdir)
        revoked = time.monotonic()
        for events in held:
            for _ in events:  # to the stream's end
                pass
        assert time.monotonic() - revoked < 5
        assert ann.get(f"/v1/jobs/{job}").status_code == 401
        # The owner's streams were given back with them: a new key of ann's opens three again.
        with server.client(server.new_key("ann")) as again:
            held = [stream(again, job) for _ in range(3)]
            assert again.get(f"/v1/jobs/{job}/events").status_code == 429
            assert again.post(f"/v1/jobs/{job}/cancel").status_code == 202
            for events in held:
                assert [e.json()["status"] for e in events if e.event == "status"][-1] == "cancelled"


def test_a_grid_over_the_trial_limit_is_refused_from_its_lengths_and_the_loop_stays_free(
    each_database_server: Server, client: httpx.Client
) -> None:
    million = {"dataset": POINTS, "hyperparameters": QUICK, "grid": {"seed": list(range(1_000_000))}}  # 7.9 MB
    body = json.dumps(million).encode()
    gaps: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=each_database_server.url) as c:
            while not done.is_set():
                started = time.monotonic()
                assert c.get("/healthz").status_code == 200
                gaps.append(time.monotonic() - started)
                time.sleep(0.01)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(3):
            started = time.monotonic()
            r = client.post("/v1/sweeps", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 422, r.text[:300]
            assert r.json()["detail"][0]["loc"] == ["body", "grid"], r.text[:300]
            assert "trials is over the limit of 10000" in r.json()["detail"][0]["msg"]
            assert time.monotonic() - started < 5
    finally:
        done.set()
        prober.join()
    assert max(gaps) < 1.5, sorted(gaps)[-5:]
    # Small bodies too (parsed on the event loop), and random draws; values within the limit are checked.
    over: list[tuple[dict[str, Any], list[str]]] = [
        ({"grid": {"seed": list(range(101)), "batch_size": list(range(1, 101))}}, ["body", "grid"]),
        ({"random": {"trials": 10_001}}, ["body", "random", "trials"]),
        ({"random": {"trials": 2, "seed_values": list(range(10_001))}}, ["body", "random"]),
    ]
    for sweep, loc in over:
        r = client.post("/v1/sweeps", json={"dataset": POINTS, "hyperparameters": QUICK, **sweep})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc, r.text[:300]
    r = client.post("/v1/sweeps", json={"dataset": POINTS, "grid": {"seed": [*range(9_999), -1]}})
    assert r.status_code == 422 and "seed: Input should be greater than or equal to 0 (-1)" in r.text, r.text[:300]


def test_a_grid_over_the_trial_limit_is_answered_before_the_rest_of_its_body(each_database_server: Server) -> None:
    body = json.dumps({"dataset": POINTS, "grid": {"seed": list(range(1_000_000))}}).encode()  # 7.9 MB
    host, port = each_database_server.url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/sweeps HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {each_database_server.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head + body[: 2 << 20])  # a quarter of the body; the rest is held back
        answer = read_until(conn, b"trials is over the limit of 10000")
        assert answer.startswith(b"HTTP/1.1 422"), answer[:300]
        # The rest, sent after all, is dropped unread: the connection serves the next request.
        conn.sendall(body[2 << 20 :] + f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert read_until(conn, b"\r\n\r\n").startswith(b"HTTP/1.1 200")


def read_until(conn: socket.socket, marker: bytes) -> bytes:
    """What conn sends until marker (a socket timeout fails the test)."""
    answer = b""
    while marker not in answer:
        piece = conn.recv(1 << 16)
        assert piece, answer[-300:]
        answer += piece
    return answer


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_big_datasets_points_stream_off_the_loop_in_bounded_memory(
    each_database_server: Server, client: httpx.Client
) -> None:
    n = 2_000_000
    x = np.arange(n) * 0.5 - 7
    csv = "x,y\n" + "".join(f"{i * 0.5 - 7},{i % 7}\n" for i in range(n))
    r = client.post("/v1/datasets", content=csv, headers={"Content-Type": "text/csv"}, timeout=120)
    assert r.status_code == 201, r.text
    path = f"/v1/datasets/{r.json()['id']}/points"
    whole = client.get(path, timeout=120).json()
    assert whole["x"] == x.tolist() and whole["y"] == (np.arange(n) % 7.0).tolist()
    for most in (2, 3, 1000, 131_073, n - 1, n):
        picked = np.unique(np.linspace(0, n - 1, most).round().astype(np.int64)) if most < n else np.arange(n)
        got = client.get(path, params={"max_points": most}, timeout=120).json() if most <= 1_000_000 else None
        if got is not None:
            assert got["x"] == x[picked].tolist() and got["y"] == (picked % 7.0).tolist(), most
    del whole

    pid = each_database_server.process.pid if each_database_server.process else 0
    before, peak, gaps = rss_mb(pid), 0.0, []
    done = threading.Event()

    def probe() -> None:
        nonlocal peak
        with httpx.Client(base_url=each_database_server.url) as c:
            while not done.is_set():
                started = time.monotonic()
                assert c.get("/healthz").status_code == 200
                gaps.append(time.monotonic() - started)
                peak = max(peak, rss_mb(pid))
                time.sleep(0.02)

    def read(_: int) -> int:
        with each_database_server.client() as c, c.stream("GET", path) as streamed:
            return sum(len(chunk) for chunk in streamed.iter_bytes())

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            sizes = list(pool.map(read, range(4)))
    finally:
        done.set()
        prober.join()
    assert len(set(sizes)) == 1
    assert peak - before < 150, (before, peak)
    assert max(gaps) < 1.5, sorted(gaps)[-5:]
    assert client.delete(path.removesuffix("/points")).status_code == 204
    assert client.get(path).status_code == 404


def closed_after(sock: socket.socket, within: float) -> tuple[float | None, bytes]:
    """Read sock until the server closes it: (seconds it took, what came), None if still open."""
    sock.settimeout(within)
    started, data = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return None, data
    return time.monotonic() - started, data


def test_serve_closes_idle_connections_and_bodies_that_stop_arriving(make_server: Callable[..., Server]) -> None:
    """What serve closes itself (docs/operations.md says where the rest is closed: a connection
    that never finishes its headers is the proxy's in front, as uvicorn has no header timeout)."""
    server = make_server(body_timeout_seconds="2")
    head = b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    key = f"Authorization: Bearer {server.key}\r\n".encode()
    body = json.dumps({"dataset": POINTS, "hyperparameters": QUICK}).encode()
    with ExitStack() as sockets:

        def connect() -> socket.socket:
            return sockets.enter_context(socket.create_connection(("127.0.0.1", server.port)))

        idle = connect()  # after its answer, idle: closed by uvicorn's keep-alive timeout (5 s)
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        took, answer = closed_after(idle, 10)
        assert answer.startswith(b"HTTP/1.1 200") and took is not None and took < 7
        stranger = connect()  # a body without a key is never waited for: 401 at once
        stranger.sendall(head + b"Content-Length: 1000000\r\n\r\n")
        stranger.settimeout(2)
        assert stranger.recv(100).startswith(b"HTTP/1.1 401")
        stalled = connect()  # a key's body that stops arriving: 408 after the body timeout
        stalled.sendall(head + key + b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        started = time.monotonic()
        stalled.settimeout(10)
        answer = b""
        while not answer.endswith(b"}"):
            answer += stalled.recv(1000)
        assert answer.startswith(b"HTTP/1.1 408") and b"stopped arriving" in answer, answer[:300]
        assert 1.5 < time.monotonic() - started < 5
        slow = connect()  # a slow body that keeps coming is read to its end
        slow.sendall(head + key + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        for i in range(0, len(body), len(body) // 3 + 1):
            time.sleep(1.2)
            slow.sendall(body[i : i + len(body) // 3 + 1])
        took, answer = closed_after(slow, 10)
        assert answer.startswith(b"HTTP/1.1 202"), answer[:300]


def test_an_owners_streams_are_paced_and_anothers_are_not(make_server: Callable[..., Server]) -> None:
    """What an owner's streams send costs the event loop: they share a pace of bytes a second."""
    server = make_server(stream_bytes_per_second_per_owner="262144")
    with server.client() as ann, server.client(server.new_key("bob")) as bob:
        body = {"dataset": POINTS, "hyperparameters": {**QUICK, "epochs": 20_000}}  # 20,000 entries: ~800 kB
        jobs = [c.post("/v1/jobs", json=body, headers=WAIT).json() for c in (ann, bob)]
        assert all(job["status"] == "succeeded" for job in jobs), jobs

        def replayed(c: httpx.Client, job_id: str) -> float:
            started = time.monotonic()
            with connect_sse(c, "GET", f"/v1/jobs/{job_id}/events") as source:
                assert [e.event for e in source.iter_sse()] == ["progress", "status"]
            return time.monotonic() - started

        assert replayed(ann, jobs[0]["id"]) < 2  # the first, at once
        assert replayed(bob, jobs[1]["id"]) < 2  # another owner's: not held by ann's pace
        assert replayed(ann, jobs[0]["id"]) > 1.5  # ann's next waits for what the first sent
